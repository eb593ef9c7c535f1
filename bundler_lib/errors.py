"""One error type for every stage: it names the stage, the input and the remedy."""


class StageError(Exception):
    """A bad input or an impossible request. The CLI prints it as one line and exits 2."""

    def __init__(self, stage: str, input: str, problem: str, remedy: str):
        self.stage = stage
        self.input = input
        self.problem = problem
        self.remedy = remedy
        super().__init__(self.message())

    def message(self) -> str:
        return f"[{self.stage}] {self.input}: {self.problem}. Remedy: {self.remedy}"
