class FlashAttentionBackend:
    name = "flash"
