"""einops' `rearrange` and `repeat` on torch tensors, for bundles that run where einops is not installed
(written for vllm-bundler, not copied from einops; vLLM reads only these two).

The pattern grammar is einops': `left -> right`, each side axes separated by spaces; an axis is a name (a Python
identifier not starting or ending with `_`), `...` (at most once a side; not inside parentheses on the left), `1`
(a unit axis), or another number (a new axis of that size, on the right of `repeat` only); `(a b)` composes axes
into one dimension (one level), `()` is a unit axis. Sizes the shape does not determine are given by keyword.
Whatever einops refuses is refused with an EinopsError naming the pattern; nothing outside the grammar is guessed.

A bundle embeds this file's text as the body of one function, which returns a module of the names in `__all__`.
"""
import math

__all__ = ["EinopsError", "rearrange", "repeat"]

_ELLIPSIS = "..."


class EinopsError(RuntimeError):
    pass


def _side(text, left):
    """The side's dimensions: each a list of axes (names, `...`, or ints for anonymous sizes; a bare axis is a
    list of one, `1` and `()` an empty list), or `...` itself where it stands alone."""
    if "." in text.replace(_ELLIPSIS, ""):
        raise EinopsError("dots may appear only as an ellipsis (...)")
    groups, seen, group = [], set(), None
    for token in filter(None, text.replace("(", " ( ").replace(")", " ) ").split(" ")):
        if token == "(":
            if group is not None:
                raise EinopsError("parentheses inside parentheses are not allowed")
            group = []
            continue
        if token == ")":
            if group is None:
                raise EinopsError("unbalanced parentheses")
            groups.append(group)
            group = None
            continue
        if token.isdecimal():
            size = int(token)
            if size == 1:
                if group is None:
                    groups.append([])
                continue
            if size == 0:
                raise EinopsError("an anonymous axis must have a positive size")
            axis = size
        elif token == _ELLIPSIS:
            axis = _ELLIPSIS
            if group is not None and left:
                raise EinopsError("an ellipsis inside parentheses is not allowed on the left side")
        elif not token.isidentifier() or token.startswith("_") or token.endswith("_"):
            raise EinopsError(f"invalid axis name {token!r}")
        else:
            axis = token
        if not isinstance(axis, int):
            if axis in seen:
                raise EinopsError(f"axis {axis!r} appears twice on one side")
            seen.add(axis)
        if group is None:
            groups.append(axis if axis == _ELLIPSIS else [axis])
        else:
            group.append(axis)
    if group is not None:
        raise EinopsError("unbalanced parentheses")
    return groups


def _axes(groups):
    return [a for g in groups for a in ([g] if g == _ELLIPSIS else g)]


def _named(groups):
    return {a for a in _axes(groups) if not isinstance(a, int)}


def _anonymous(groups):
    return [a for a in _axes(groups) if isinstance(a, int)]


def _expand(groups, names, sizes):
    """The dimensions with `...` replaced by the names of the input dimensions it stands for (one dimension each
    where it stands alone, composed in parentheses); anonymous axes get names, and their sizes go into `sizes`."""
    out, n = [], 0
    for g in groups:
        if g == _ELLIPSIS:
            out.extend([a] for a in names)
            continue
        axes = []
        for a in g:
            if a == _ELLIPSIS:
                axes.extend(names)
            elif isinstance(a, int):
                axes.append(f"#{n}")
                sizes[f"#{n}"] = a
                n += 1
            else:
                axes.append(a)
        out.append(axes)
    return out


def _transform(operation, tensor, pattern, axes_lengths):
    try:
        return _apply(operation, tensor, pattern, axes_lengths)
    except EinopsError as e:
        raise EinopsError(f"Error while processing {operation} pattern {pattern!r}: {e}") from None


def _apply(operation, tensor, pattern, axes_lengths):
    import torch  # here, not at the top: the bundler reads this module where torch need not be installed

    if isinstance(tensor, (list, tuple)):
        if not tensor:
            raise EinopsError("an empty list of tensors")
        tensor = torch.stack(list(tensor))
    if not isinstance(tensor, torch.Tensor):
        raise EinopsError(f"this replacement handles torch tensors only, not {type(tensor).__name__}")
    if pattern.count("->") != 1:
        raise EinopsError("the pattern must contain '->' once")
    left_text, right_text = pattern.split("->")
    left = _side(left_text, left=True)
    right = _side(right_text, left=False)
    if _anonymous(left):
        raise EinopsError(f"anonymous axes other than 1 are not allowed on the left side of {operation}")
    lnames, rnames = _named(left), _named(right)
    if (_ELLIPSIS in lnames) != (_ELLIPSIS in rnames):
        raise EinopsError("an ellipsis must be on both sides or on neither")
    if operation == "rearrange":
        if _anonymous(right):
            raise EinopsError("anonymous axes other than 1 are not allowed in rearrange")
        if lnames != rnames:
            raise EinopsError(f"axes on one side only: {sorted(lnames ^ rnames)}")
    else:
        if lnames - rnames:
            raise EinopsError(f"axes on the left side only: {sorted(lnames - rnames)}")
        unsized = rnames - lnames - set(axes_lengths)
        if unsized:
            raise EinopsError(f"give the sizes of the new axes {sorted(unsized)}")
    for name, size in axes_lengths.items():
        if not name.isidentifier() or name.startswith("_") or name.endswith("_"):
            raise EinopsError(f"invalid axis name {name!r}")
        if name not in lnames | rnames:
            raise EinopsError(f"axis {name!r} is not used in the pattern")
        if isinstance(size, bool) or not isinstance(size, (int, torch.SymInt)) or size <= 0:
            raise EinopsError(f"the size of axis {name!r} must be a positive int, not {size!r}")

    shape = tuple(tensor.shape)
    if _ELLIPSIS in lnames:
        if len(shape) < len(left) - 1:
            raise EinopsError(f"expected at least {len(left) - 1} dimensions, got {len(shape)}")
        n_ellipsis = len(shape) - (len(left) - 1)
    else:
        if len(shape) != len(left):
            raise EinopsError(f"expected {len(left)} dimensions, got {len(shape)}")
        n_ellipsis = 0
    sizes = dict(axes_lengths)
    dots = [f"{_ELLIPSIS}{i}" for i in range(n_ellipsis)]
    dims, right = _expand(left, dots, sizes), _expand(right, dots, sizes)
    for g, length in zip(dims, shape):
        unknown = [a for a in g if a not in sizes]
        known = math.prod([sizes[a] for a in g if a in sizes])
        if len(unknown) > 1:
            raise EinopsError(f"cannot infer the sizes of {unknown}: give all but one by keyword")
        if unknown:
            if length % known:
                raise EinopsError(f"cannot split a dimension of {length} into chunks of {known}")
            sizes[unknown[0]] = length // known
        elif length != known:
            raise EinopsError(f"a dimension of {length} does not match {g or 1} = {known}")

    left_axes = [a for g in dims for a in g]
    right_axes = [a for g in right for a in g]
    out = tensor.reshape([sizes[a] for a in left_axes])
    kept = [a for a in right_axes if a in left_axes]
    out = out.permute([left_axes.index(a) for a in kept])
    if len(kept) != len(right_axes):
        out = out.reshape([sizes[a] if a in left_axes else 1 for a in right_axes])
        out = out.expand([sizes[a] for a in right_axes])
    return out.reshape([math.prod([sizes[a] for a in g]) for g in right])


def rearrange(tensor, pattern, **axes_lengths):
    """einops.rearrange: reorder, split, merge and add or remove unit axes."""
    return _transform("rearrange", tensor, pattern, axes_lengths)


def repeat(tensor, pattern, **axes_lengths):
    """einops.repeat: rearrange, and add new axes whose elements repeat the input's."""
    return _transform("repeat", tensor, pattern, axes_lengths)
