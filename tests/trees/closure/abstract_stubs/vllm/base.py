from abc import ABC, abstractmethod


class Base(ABC):
    @abstractmethod
    def apply(self, x):
        """Every subclass overrides it."""
        raise NotImplementedError

    @abstractmethod
    def finalize(self, x): ...

    @staticmethod
    @abstractmethod
    def kind():
        raise NotImplementedError

    @abstractmethod
    def via_super(self):
        pass

    def run(self, x):
        return self.finalize(self.apply(x)) + self.kind() + self.via_super()


class Plain:
    """Not an ABC: @abstractmethod is not enforced, an instance may run the stub."""

    @abstractmethod
    def apply(self, x):
        raise NotImplementedError
