from vllm import layers as layers_mod


class Unrelated:
    """Defines `helper` and `hook` too, but no instance of it is ever `self` in the methods that read them."""

    def helper(self):
        return -1

    def hook(self):
        return -2

    def shared(self):
        return 30000


class Runner:
    def run(self, x):
        return self.helper() + x

    def helper(self):
        return 1


class FastRunner(Runner):
    def helper(self):   # an override: `self` in Runner.run may be a FastRunner
        return 10


class Mixin:
    def go(self):
        return self.hook()   # resolved on the class that mixes this in


class Hooks:
    def hook(self):
        return 100


class Mixed(Mixin, Hooks):
    pass


class FromModule(layers_mod.Layer):
    """A base written module.Name: its MRO still holds Layer."""

    def call(self):
        return self.layer_part()


def other_receiver(obj):
    return obj.shared()   # any class's `shared`: not a read through self


def target():
    return (Runner().run(0), FastRunner().run(0), Mixed().go(), FromModule().call(),
            other_receiver(Unrelated()))
