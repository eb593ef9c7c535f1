class TritonAttentionBackend:
    name = "triton"
