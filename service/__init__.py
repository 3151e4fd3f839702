"""Online retrieval service: FastAPI + ONNX Runtime + Redis. Never imports torch or training."""
