def broken_fn(:
    return 1
