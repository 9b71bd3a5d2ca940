"""The encoders AdaIN can use, described without loading TensorFlow (the driver validates
specs and content sizes with it; `tasks.adain` builds the networks)."""

# Encoder name -> how many times it shrinks an image (2 ** pooling layers); AdaIN content
# sizes are padded to a multiple of it, training sizes must be one.
ENCODER_DOWNSAMPLING = {"vgg19": 8, "tiny": 4}
