class Heavy:
    pass


def heavy_default():
    return Heavy()
