"""Device set-up every TensorFlow worker process does first (train workers, score,
generate and stylize actors)."""


def enable_gpu_memory_growth(tf) -> None:
    # Without this TensorFlow grabs all GPU memory in every worker process.
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised: growth can only be set before first use

