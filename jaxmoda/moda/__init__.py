"""MoDA: multi-modal diffusion of talking-head motion in LivePortrait's keypoint parameter space."""
