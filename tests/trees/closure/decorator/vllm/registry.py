op_registry = {}


def register(name):
    def deco(cls):
        op_registry[name] = cls
        return cls

    return deco


def direct_register_custom_op(op_name, op_func, mutates_args=None, fake_impl=None):
    pass
