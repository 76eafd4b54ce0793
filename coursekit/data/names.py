"""The names of the course's datasets and their splits, without importing torch: the command
line's ``--help`` reads them (intro, Chapter 1)."""

DATASETS = ("digits", "mnist", "faces", "photos", "text")
IMAGE_DATASETS = ("digits", "mnist", "faces")  # the ones a generative model trains on
# the split that a training run validates on (digits keep "test" for the final numbers)
HELD_OUT_SPLIT = {"digits": "val", "mnist": "test", "faces": "test"}
DIGITS_LEVELS = 17  # pixel values of load_digits are the integers 0..16
