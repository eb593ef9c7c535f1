def invocation_example(small=False):
    x = torch.randn(4, 16)
    y = TinyNorm(16)(x)
    assert y.shape == x.shape
    return y
