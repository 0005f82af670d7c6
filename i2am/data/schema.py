"""The batch every dataset yields and every adapter reads: one dict of tensors and lists.

Images are float tensors in [-1, 1], [B, 3, H, W]; masks are float {0, 1}, [B, 1, H, W]; all at the dataset's
image size (512x384 for VITON-HD, 512x512 for COCO/PBE, the toy world's own size for toy data).
Keys absent from a dataset are simply absent from its batches.
"""

SAMPLE_ID = "sample_id"        # list[str], unique per sample: "<image>__<cloth>" for try-on, "<image>" otherwise
IMAGE = "image"                # the person / scene image (ground truth in paired mode)
REFERENCE = "reference"        # the reference image the model is conditioned on (garment for try-on, crop for PBE)
REFERENCE_MASK = "reference_mask"  # 1 on the reference object (VITON-HD cloth-mask); IMACS_r's region
INPAINT_MASK = "inpaint_mask"  # 1 on the region to generate (try-on region / bbox); IMACS_g's region
AGNOSTIC = "agnostic"          # person with the try-on region greyed (VITON-HD agnostic-v3.2)
DENSEPOSE = "densepose"        # VITON-HD image-densepose (toy world: canonical garment coordinates)
GT_WARPED_MASK = "gt_cloth_warped_mask"  # warped-garment mask on the person (training of the custom model)
CLOTH_WARP = "cloth_warp"      # DCI-VTON's warped garment
CLOTH_WARP_MASK = "cloth_warp_mask"
PARSE = "image_parse"          # image-parse-v3 label map, [B, 1, H, W] long
CORRESPONDENCE = "correspondence"  # toy world only: [B, 2, H, W] float, source garment pixel (row, col) per person
                                   # pixel on the reference image grid, -1 where the garment does not cover it
BBOX = "bbox"                  # detection sets: [B, 4] float, COCO xywh in pixels of the batch's image size
CATEGORY = "category"          # list[str]
POSE_KEYPOINTS = "pose_keypoints"  # VITON-HD openpose_json: [B, K, 3] float (x, y, confidence), x/y in pixels of
                                   # the batch's image size (K = 18 for VITON-HD's COCO-18 keypoints)
