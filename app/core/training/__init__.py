"""Training: the engine, its tf.data input and augmentation, architectures, callbacks, events, distillation
and weight transfer."""
