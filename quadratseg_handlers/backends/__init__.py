"""The model libraries, each behind a small adapter: ultralytics (loading, results),
segment-anything, MMSegmentation, inpainting (LaMa, OpenCV) and the offline switches.
Imported libraries load lazily, inside the functions that need them."""
