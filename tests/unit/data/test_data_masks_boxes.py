"""Pure helpers: mask conventions, boxes, correspondence resampling."""
import numpy as np
import pytest
import torch

from i2am.data.boxes import box_mask, mask_to_xywh, pixel_box, rescale_xywh
from i2am.data.correspondence import resize_correspondence, warp_reference
from i2am.data.masks import binarize, from_model_mask, to_model_mask


def test_mask_conventions():
    region = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    assert torch.equal(to_model_mask(region, "generate_is_one"), region)
    assert torch.equal(to_model_mask(region, "keep_is_one"), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    assert torch.equal(from_model_mask(to_model_mask(region, "keep_is_one"), "keep_is_one"), region)
    assert torch.equal(binarize(torch.tensor([0.2, 0.5, 0.9])), torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="unknown mask convention 'inverted'"):
        to_model_mask(region, "inverted")


def test_boxes():
    assert pixel_box([1.5, 2.0, 3.2, 4.0], 10, 10) == (1, 2, 5, 6)
    assert pixel_box([8.0, -1.0, 5.0, 3.0], 10, 10) == (8, 0, 10, 2)
    mask = box_mask([1.5, 2.0, 3.2, 4.0], 8, 8)
    assert mask.sum() == 255 * 4 * 4 and mask[2, 1] == 255 and mask[6, 1] == 0
    assert rescale_xywh([10, 20, 30, 40], (100, 50), (200, 200)).tolist() == [40, 40, 120, 80]
    assert mask_to_xywh(torch.from_numpy(mask >= 128).float()[None]).tolist() == [1, 2, 4, 4]
    assert mask_to_xywh(torch.zeros(1, 4, 4)).tolist() == [0, 0, 0, 0]


def test_resize_correspondence_by_hand():
    corr = np.full((4, 4, 2), -1, np.float32)
    corr[1, 3] = (3.0, 1.0)
    corr[3, 3] = (0.0, 7.0)
    same = resize_correspondence(corr, (4, 4), (8, 8), (8, 8))
    assert torch.equal(same.permute(1, 2, 0), torch.from_numpy(corr))
    half = resize_correspondence(corr, (2, 2), (8, 8), (4, 4))  # output (r, c) <- input (2r + 1, 2c + 1)
    assert half[:, 0, 1].tolist() == [1.25, 0.25]               # (3 + 0.5) / 2 - 0.5, (1 + 0.5) / 2 - 0.5
    assert half[:, 1, 1].tolist() == [-0.25, 3.25] and (half[:, 0, 0] == -1).all()


def test_warp_reference_samples_the_given_pixels():
    reference = torch.arange(12.0).view(1, 1, 3, 4)
    corr = torch.stack([torch.tensor([[2.0, 0.0]]), torch.tensor([[3.0, 1.5]])])[None]  # pixels (2, 3), (0, 1.5)
    warped, valid = warp_reference(reference, corr)
    assert warped.flatten().tolist() == pytest.approx([11.0, 1.5]) and valid.flatten().tolist() == [1.0, 1.0]
    warped, valid = warp_reference(reference, torch.full((1, 2, 1, 1), -1.0))
    assert warped.item() == 0 and valid.item() == 0
