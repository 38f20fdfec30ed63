"""The one path a frame takes: detection, classification, tracking, the pipeline and the overlay renderer."""
