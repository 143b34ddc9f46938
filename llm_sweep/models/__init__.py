"""GPT-2 and Llama-style language models (`build.build_model` from a core.model_config.ModelConfig),
their layers and their Hugging Face conversions."""
