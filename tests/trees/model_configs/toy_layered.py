"""A model's config class with methods vLLM's layers call (as vLLM's KimiLinearConfig.is_kda_layer(i)), for
tools/gen_model_configs.py's `method_values` and the example's config answering them (tests/test_model_configs.py)."""


class PretrainedConfig:
    """transformers' base, by name: the generator's walk over the model's classes stops here."""

    def to_dict(self):
        return dict(vars(self))

    def get_text_config(self):
        return self


class ToyLayeredConfig(PretrainedConfig):
    model_type = "toy_layered"

    def __init__(self, hidden_size=1024, num_attention_heads=16, num_hidden_layers=4, linear_layers=(2, 4)):
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.num_hidden_layers = num_hidden_layers
        self.linear_layers = list(linear_layers)  # 1-indexed, as a checkpoint lists them

    def to_dict(self):  # an override of the base's API: a dict, never recorded as a method's value
        return {**super().to_dict(), "model_type": self.model_type}

    def is_linear_layer(self, layer_idx: int):
        return layer_idx + 1 in self.linear_layers

    def mlp_kind(self):
        return "dense"

    def head_of(self, name: str):  # not a layer index: left out
        return name

    def as_module(self):  # not a plain value: left out
        return object()

    def grow(self):  # a side effect on the copy the generator evaluates, never on the config written
        self.num_hidden_layers += 1
        return None
