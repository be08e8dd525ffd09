"""What all three methods share: passages, encoders, the dense index reader, the prior and posterior
retrievers, the generator, the latent-variable model, and the factory that builds it."""
