def rocm_thing():
    return "rocm"
