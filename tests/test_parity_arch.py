"""Step-loss parity across the loops holds for every tiny encoder architecture, not only BERT:
each loop feeds the model exactly the tokenizer's inputs (no token_type_ids where the forward
takes none), so DistilBERT, DeBERTa-v2 and ModernBERT train the same batches everywhere."""

import json

import pytest

import loops
from bench.analysis import cells_of, parity_rows
from bench.cell.main import run_cell
from bench.config import Cell, RunConfig
from bench.records import Record

PARITY_TOL = 1e-5
ARCHS = ["bert", "roberta", "distilbert", "electra", "deberta-v2", "modernbert"]
STEPS = 8


def _parity(arch, glue_dir):
    run = RunConfig(model=f"tiny-{arch}", glue_dir=glue_dir, train_samples=48, eval_samples=16,
                    max_steps=STEPS, timing_warmup=1, parity=True)
    records = [Record.from_dict(json.loads(run_cell(Cell(loop, "cpu", "fp32", run), progress=False).to_json()))
               for loop in loops.available()]
    assert all(r.status == "ok" for r in records), [(r.loop, r.reason) for r in records]
    assert all(r.model.weights == records[0].model.weights for r in records)
    rows = parity_rows(cells_of(records))
    assert {row.loop for row in rows} == set(loops.available()) - {"manual"}
    for row in rows:
        assert row.steps == STEPS and row.same_batches
        assert row.max_rel_diff <= PARITY_TOL, (arch, row)
    return records


@pytest.mark.slow  # about a minute: five cells, each in its own process
def test_distilbert_parity_across_every_loop(glue_dir):
    """Fast case: an encoder whose forward takes no token_type_ids and names its dropout itself."""
    records = _parity("distilbert", glue_dir)
    assert records[0].model.dropout == "hidden=0.1 attention=0.1 classifier=0.2"


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "distilbert"])
def test_parity_across_every_loop_per_architecture(arch, glue_dir):
    _parity(arch, glue_dir)
