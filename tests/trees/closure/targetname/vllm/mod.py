from vllm.other import make


class Linear:
    def build(self):
        return make()
