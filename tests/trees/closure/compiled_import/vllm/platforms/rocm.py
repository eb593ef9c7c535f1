def get_cdna_version():
    return 3
