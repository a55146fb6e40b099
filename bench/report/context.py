"""What every section of one report reads: the records and their analysis, computed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.analysis.cells import SEED_DETAIL, CellStats, cells_of, cells_over_seeds, seed_count
from bench.analysis.explain import Explained, explain_rows
from bench.analysis.finetune import FinetunePair, finetune_pairs
from bench.analysis.machines import Environments
from bench.analysis.quality import QualityGroup, quality_rows
from bench.records import Record


@dataclass
class Context:
    records: list[Record]
    cells: list[CellStats]  # every cell, `bench explain`'s flip cells included (over its seeds, past SEED_DETAIL)
    main: list[CellStats]  # the cells that compare loops (no flip)
    seed_cells: list[CellStats]  # the cells that compare loops, seed by seed
    explained: list[Explained]  # `bench explain`'s effects, if any flip cell ran
    quality: list[QualityGroup]  # the paired quality comparison, where records hold per-pair predictions
    environments: Environments  # where each run was measured (one, unless gathered over sessions)
    out_md: Path
    finetune: list[FinetunePair] = field(default_factory=list)  # LoRA beside full fine-tuning, per loop
    plots: dict = field(default_factory=dict)  # section module -> its plots' file names, by the section's keys

    @classmethod
    def of(cls, records: list[Record], out_md: Path) -> "Context":
        cells = cells_of(records)
        seed_cells = [c for c in cells if not c.run.flip]
        if seed_count(seed_cells) > SEED_DETAIL:
            cells = cells_over_seeds(records)
        main = [c for c in cells if not c.run.flip]
        return cls(records=records, cells=cells, main=main, seed_cells=seed_cells, explained=explain_rows(records),
                   quality=quality_rows(seed_cells), environments=Environments.of(records), out_md=out_md,
                   finetune=finetune_pairs(seed_cells))

    @property
    def over_seeds(self) -> bool:
        """The per-cell tables take each cell over its seeds (more than SEED_DETAIL of them)."""
        return self.main is not self.seed_cells and len(self.main) != len(self.seed_cells)

    def plots_of(self, section: str) -> dict:
        """The plots a section drew (its ``plots``), by the keys it chose."""
        return self.plots.get(section, {})

    @property
    def main_ok(self) -> list[Record]:
        """The ok runs of the cells that compare loops."""
        return [r for c in self.main for r in c.ok]

    @property
    def explained_any(self) -> bool:
        """Some cell of these records is a `bench explain` flip."""
        return any(r.run.flip for r in self.records)
