"""The batch counter: each micro-batch's loss, samples and tokens, summed into its optimizer step,
and a running checksum of which pairs came in which order.  Losses and token counts are kept as
tensors (no sync per step) and read when the record is made."""

from __future__ import annotations

from bench.cell.ranks import Rate


class BatchCounter:
    # Global throughput: every rank's timed samples (tokens) over the slowest rank's timed time.
    MERGE = {"samples_per_s": Rate("samples"), "real_tokens_per_s": Rate("real_tokens"),
             "padded_tokens_per_s": Rate("padded_tokens")}
    PER_RANK = ("samples_per_s", "real_tokens_per_s")

    def __init__(self):
        self._pending_loss: list = []
        self._pending_samples = self._pending_real = self._pending_padded = 0
        self.losses: list = []
        self.samples: list[int] = []
        self.real_tokens: list = []
        self.padded_tokens: list[int] = []
        self.checksum = 0  # of every batch's token ids and positions, in order (see observe)

    def observe(self, loss, batch) -> None:
        import torch

        self._pending_loss.append(loss.detach())
        mask = batch["attention_mask"]
        # A running checksum of which pairs came in which order, kept on the device (no sync):
        # equal checksums in two records mean the two loops saw the same batches in the same order.
        ids = batch["input_ids"]
        positions = torch.arange(1, ids.shape[1] + 1, device=ids.device)
        self.checksum = (self.checksum * 1000003 + (ids.long() * positions).sum()) % 2147483647
        self._pending_samples += int(mask.shape[0])
        self._pending_real += mask.sum()  # a tensor: summed lazily, no sync here
        self._pending_padded += int(mask.numel())

    @property
    def pending(self) -> bool:
        """Has a micro-batch been observed since the last optimizer step?"""
        return bool(self._pending_loss)

    def end_step(self) -> None:
        """The step's loss is its micro-batches' mean; its samples and tokens their sums."""
        n = len(self._pending_loss)
        self.losses.append(sum(self._pending_loss) / n if n > 1 else self._pending_loss[0])
        self.samples.append(self._pending_samples)
        self.real_tokens.append(self._pending_real)
        self.padded_tokens.append(self._pending_padded)
        self._pending_loss, self._pending_samples, self._pending_real, self._pending_padded = [], 0, 0, 0

    def timed_counts(self, warmup: int) -> dict:
        """This rank's samples and tokens over its timed steps, for rank 0's global rates."""
        return {"samples": sum(self.samples[warmup:]), "real_tokens": sum(int(t) for t in self.real_tokens[warmup:]),
                "padded_tokens": sum(self.padded_tokens[warmup:])}

    def fields(self, steps: list[float], warmup: int) -> dict:
        timed_s = sum(steps[warmup:])
        rated = bool(steps[warmup:]) and timed_s > 0
        real = [int(t) for t in self.real_tokens]
        losses = [float(x) for x in self.losses]
        return {
            "samples_per_s": sum(self.samples[warmup:]) / timed_s if rated else None,
            "real_tokens_per_s": sum(real[warmup:]) / timed_s if rated else None,
            "padded_tokens_per_s": sum(self.padded_tokens[warmup:]) / timed_s if rated else None,
            "padding_fraction": 1 - sum(real) / sum(self.padded_tokens) if self.padded_tokens else None,
            "step_losses": losses,
            "train_loss_final": losses[-1] if losses else None,
            "step_samples": self.samples,
            "step_real_tokens": real,
            "step_padded_tokens": self.padded_tokens,
            "samples_seen": sum(self.samples),
            "batch_order_checksum": int(self.checksum),
        }
