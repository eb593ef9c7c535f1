class FlexAttentionBackend:
    name = "flex"
