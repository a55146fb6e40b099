"""A report section as a user would add one (docs/extending.md, "Adding a report section"): one file."""

HEADING = "How many steps did each loop time?"


def lines(ctx) -> list[str]:
    return [f"## {HEADING}", ""] + [f"- {c.loop}: {c.median(lambda r: r.timed_steps)}" for c in ctx.main if c.ok] + [""]
