from vllm.base import Base


class Child(Base):
    def forward(self):
        return self.used()
