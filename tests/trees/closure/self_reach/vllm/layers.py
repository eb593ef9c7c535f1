class Layer:
    def layer_part(self):
        return 1000

    def unused_part(self):
        return 0
