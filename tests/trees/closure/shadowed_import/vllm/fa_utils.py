try:
    from flash_pkg import attn_func
except ImportError:
    attn_func = None
