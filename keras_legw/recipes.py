"""Named large-batch recipes: which rules scale a schedule tuned at a base
batch, as one table that the zoo's `--schedule`, the `plan` CLI and the
benchmarks all read.

    legw                  sqrt peak, warmup epochs x k (You et al. 2019)
    goyal                 linear peak, constant-epoch warmup (Goyal et al.
                          2017, "Accurate, Large Minibatch SGD")
    sqrt_constant_warmup  sqrt peak, constant-epoch warmup
    no_scaling            the base schedule unchanged (epochs as at the base)
    constant              the sqrt-scaled peak from step 0: no warmup, no decay
"""

from keras_legw._validation import check_one_of
from keras_legw.schedules import LEGW

# name: the `LEGW` arguments the recipe fixes.
RECIPES = {
    "legw": dict(scaling="sqrt", warmup_scaling="linear"),
    "goyal": dict(scaling="linear", warmup_scaling="none"),
    "sqrt_constant_warmup": dict(scaling="sqrt", warmup_scaling="none"),
    "no_scaling": dict(scaling="none", warmup_scaling="none"),
    "constant": dict(scaling="sqrt", warmup_scaling="none",
                     base_warmup_epochs=0.0, decay="constant"),
}


def recipe(name, *, defaults=None, **kwargs):
    """The `LEGW` schedule of recipe `name` (see `RECIPES`).

    Precedence, lowest first: `LEGW`'s own defaults, `defaults`, the
    recipe's fixed values, `kwargs`. So `defaults` is for values a caller
    has whatever the recipe (a command line's `--decay`, say) and that the
    recipe may fix (`constant` has no warmup and no decay), while an
    argument in `kwargs` overrides the recipe (e.g.
    ``recipe("legw", warmup_scaling="none")`` is `sqrt_constant_warmup`).

    Raises:
        ValueError: for an unknown name, or any invalid `LEGW` argument.
    """
    check_one_of("name", name, tuple(RECIPES))
    return LEGW(**{**(defaults or {}), **RECIPES[name], **kwargs})


def goyal(**kwargs):
    """Goyal et al.'s recipe: `recipe("goyal", **kwargs)`."""
    return recipe("goyal", **kwargs)
