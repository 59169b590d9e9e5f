"""torch Dataset over a peak cache: items are peak lists, batches are PeakBatch + labels.

Nothing is simulated here; profiles are rendered (and augmented) from the batch on the
training device, with :func:`xrdcore.diffraction.profile.render` or
:func:`xrdcore.diffraction.augment.augment`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xrdcore.data.cache import PeakCache
from xrdcore.diffraction.profile import PeakBatch
from xrdcore.diffraction.pxrd import PeakList


class PeakDataset(torch.utils.data.Dataset):
    """The structures of one split of a cache, as (peak list, space-group number) pairs."""

    def __init__(self, cache: PeakCache | str, split: str = "train"):
        self.cache = cache if isinstance(cache, PeakCache) else PeakCache(cache)
        self.split = split
        self.indices = self.cache.indices(split)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[PeakList, int]:
        index = int(self.indices[item])
        return self.cache.peaks(index), int(self.cache.space_groups[index])


def collate_peaks(items: Sequence[tuple[PeakList, int]]) -> tuple[PeakBatch, torch.Tensor]:
    """``DataLoader(collate_fn=collate_peaks)``: a padded PeakBatch and the space-group numbers."""
    peaks, labels = zip(*items)
    return PeakBatch.from_peak_lists(peaks), torch.tensor(labels, dtype=torch.long)
