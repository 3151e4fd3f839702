"""One model version: its bundle (files, catalog, tree), the engines that run it (SEATER's
encoder + constrained beam search, the dense baseline's brute-force scan) and the
contract the data plane sees them through (:mod:`service.model.engine`)."""
