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
"""The named recipes: each name and the `LEGW` arguments it fixes.

| name | peak (`scaling`) | warmup (`warmup_scaling`) | also fixes |
|---|---|---|---|
| `legw` | `"sqrt"` | `"linear"`: epochs x k | |
| `goyal` | `"linear"` | `"none"`: constant epochs | |
| `sqrt_constant_warmup` | `"sqrt"` | `"none"` | |
| `no_scaling` | `"none"` | `"none"` | |
| `constant` | `"sqrt"` | `"none"` | no warmup, `decay="constant"` |

`legw` is You et al. 2019; `goyal` is Goyal et al. 2017 ("Accurate, Large
Minibatch SGD"); `no_scaling` is the base schedule unchanged (epochs as at
the base batch); `constant` is the sqrt-scaled peak from step 0: no warmup,
no decay. `recipe(name, ...)` builds the schedule.
"""


def recipe(name, *, defaults=None, **kwargs):
    """The `LEGW` schedule of recipe `name` (see `RECIPES`).

    Precedence, lowest first: `LEGW`'s own defaults, `defaults`, the
    recipe's fixed values, `kwargs`. So `defaults` is for values a caller
    has whatever the recipe (a command line's `--decay`, say) and that the
    recipe may fix (`constant` has no warmup and no decay), while an
    argument in `kwargs` overrides the recipe (e.g.
    ``recipe("legw", warmup_scaling="none")`` is `sqrt_constant_warmup`).

    Args:
        name (str): a key of `RECIPES`: "legw", "goyal",
            "sqrt_constant_warmup", "no_scaling" or "constant".
        defaults (dict | None): `LEGW` arguments that the recipe may
            override.
        **kwargs (Any): `LEGW` arguments; they override the recipe.

    Returns:
        schedule (LEGW): the schedule.

    Raises:
        ValueError: for an unknown name (the message lists the recipes), or
            any invalid `LEGW` argument.
    """
    check_one_of("name", name, tuple(RECIPES))
    return LEGW(**{**(defaults or {}), **RECIPES[name], **kwargs})


def goyal(**kwargs):
    """Goyal et al.'s recipe: `recipe("goyal", **kwargs)`.

    Linear scaling of the peak (``eta0 * k``) and a constant-epoch warmup
    (Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1
    Hour", arXiv 1706.02677, 2017).

    Args:
        **kwargs (Any): `LEGW` arguments, as for `recipe`.

    Returns:
        schedule (LEGW): the schedule.
    """
    return recipe("goyal", **kwargs)
