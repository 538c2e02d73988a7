"""One look for every plot in docs/results: a colour and a readable name per
schedule (the same in every figure) and plain tick labels on log axes."""

SCHEDULE_COLORS = {
    "legw": "tab:blue",
    "goyal": "tab:orange",
    "sqrt_constant_warmup": "tab:green",
    "no_scaling": "tab:red",
    "reference": "tab:gray",
    "autowu": "tab:pink",
}
SCHEDULE_NAMES = {
    "legw": "LEGW (sqrt, warmup x k)",
    "goyal": "Goyal (linear, constant warmup)",
    "sqrt_constant_warmup": "sqrt, constant warmup",
    "no_scaling": "no scaling",
    "reference": "tutorial's schedule",
    "autowu": "AutoWarmup (Kim et al.)",
}
RECIPE_COLORS = {
    "adam": "tab:blue", "adamw": "tab:cyan", "lamb": "tab:purple",
    "lars": "tab:brown", "momentum": "tab:olive",
}


def recipe_color(recipe):
    """The optimizer's colour; an extra axis (`adamw+noise`) keeps it."""
    return RECIPE_COLORS.get(recipe.split("+")[0], "black")


def plain_log_ticks(axis, values):
    """Labels a log-scale matplotlib `axis` (`ax.xaxis`, `ax.yaxis`) at
    `values` as plain numbers, with no minor labels to overlap them."""
    from matplotlib import ticker

    axis.set_major_locator(ticker.FixedLocator(sorted(values)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())
