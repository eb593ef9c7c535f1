_ON_GFX9 = "gfx9" in "gfx942"  # what the AMD GPU answers


def use_custom_kernel(head_size: int) -> bool:
    return _ON_GFX9 and head_size == 128
