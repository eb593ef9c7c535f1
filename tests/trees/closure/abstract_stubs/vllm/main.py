from vllm.base import Base, Plain


class Impl(Base):
    def apply(self, x):
        return x + 1

    def finalize(self, x):
        return x * 10

    @staticmethod
    def kind():
        return 100

    def via_super(self):
        return 1000 if super().via_super() is None else 0


class PlainImpl(Plain):
    def apply(self, x):
        return -x


def target():
    return Impl().run(1), PlainImpl().apply(2)
