"""One trainer per method; `TRAINERS[name]` maps a method name to its class."""
from jsarag.train.config import JSAConfig, RAGConfig, TrainConfig, VRAGConfig
from jsarag.train.jsa import JSATrainer
from jsarag.train.rag import RAGTrainer
from jsarag.train.vrag import VRAGTrainer

TRAINERS = {"rag": RAGTrainer, "vrag": VRAGTrainer, "jsa": JSATrainer}

__all__ = ["TRAINERS", "TrainConfig", "RAGConfig", "VRAGConfig", "JSAConfig", "RAGTrainer", "VRAGTrainer", "JSATrainer"]
