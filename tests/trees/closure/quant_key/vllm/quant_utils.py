class QuantKey:
    def __init__(self, name):
        self.name = name


kNvfp4Dynamic = QuantKey("nvfp4")
kFp8Dynamic128Sym = QuantKey("fp8-128")
kFp8Dynamic64Sym = QuantKey("fp8-64")
kFp8StaticTensorSym = QuantKey("fp8-static")
