"""Named SEATER recipes selected by ``--preset``: the project's ``default`` and the authors'
``reference`` (config layers: defaults < preset < file < flags < ``--set``).

A preset is plain data, a nested mapping mirroring ``SeaterRun``. The dataclass defaults
stay what earlier runs used, so their checkpoints load and ``make demo`` reproduces;
``default`` adds what makes the ranking loss learn. ``reference`` mirrors
``Ethan00Si/SEATER_Generative_Retrieval`` (``reference-yelp``: its Yelp file); every
setting, the file and function it comes from, and where it deliberately differs are in
``docs/seater_reference.md``.
"""

from __future__ import annotations

from typing import Any

# The project's own configuration: the dataclass defaults plus what makes the ranking
# loss learn (docs/seater_reference.md, "Why the ranking loss did not learn").
DEFAULT: dict[str, Any] = {
    "model": {"rank_heads": True, "dec_dropout_shared_rows": True},
    "losses": {"rank_negatives": "levels_no_sibling"},
}

REFERENCE: dict[str, Any] = {
    "init_from_sasrec": False,  # SASRec embeddings only build the tree (utils/build_tree.py)
    "tree": {"k": 8},  # --vocab 8 (readme: Yelp, News); 16 only for Books
    "model": {
        "max_len": 20,  # config/const.py reco_his_max_length
        "d_model": 64,
        "enc_layers": 1,
        "n_heads": 2,
        "enc_heads": 2,
        "enc_ff_mult": 4,  # inner_dim 256
        "dec_ff_mult": 4,
        "dropout": 0.2,
        "encoder_causal": False,
        "encoder_block": "transformer",  # nn.TransformerEncoderLayer, post-LN, GELU
        "scale_input": False,
        "emb_init_std": 1.0,  # nn.Embedding's N(0, 1)
        "rank_heads": True,  # encode_linaer / decode_linear
        "rank_w_init": "xavier",  # sim_W
        "dec_dropout_shared_rows": False,
    },
    "losses": {
        "lambda_align": 0.05,  # sm_weight
        "lambda_rank": 0.05,  # rk_weight
        "tau": 0.2,  # sm_temp
        "beta": 0.001,  # rk_margin
        "n_rank_negatives": 4,  # rk_num_neg
        "rank_cosine_scale": 0.0,  # rk_act: sigmoid of the bilinear score
        "gen_reduction": "tokens",
        "align_mask_children": False,
        "rank_form": "reference",
        "rank_negatives": "subtrees",
    },
    "train": {
        "epochs": 50,  # main.py dataset_paras (60 on Books)
        "batch_size": 256,
        "lr": 1e-3,
        "weight_decay": 1e-5,  # torch.optim.Adam's coupled L2
        "adam_beta2": 0.999,
        "grad_clip": 1.0,
        "metric": "recall@50",
        "patience": 5,  # es_patience 4: stops at the 5th epoch without a better recall@50
        "amp": False,  # fp32 throughout
    },
}

PRESETS: dict[str, dict[str, Any]] = {
    "default": DEFAULT,
    "reference": REFERENCE,
    # config/Yelp/SEATER.yaml differs from the shared values only in sm_temp
    "reference-yelp": {**REFERENCE, "losses": {**REFERENCE["losses"], "tau": 0.3}},
}
