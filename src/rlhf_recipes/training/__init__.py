"""What a stage needs to train: config parsing and errors, the launch, loading, staged outputs, chat, rewards."""
