class FieldType:
    pass


class ParamType:
    pass


class CheckType:
    pass
