"""One trainer per method; `TRAINERS[name]` maps a method name to its class."""
from jsarag.trainers.config import JSAConfig, RAGConfig, TrainConfig, VRAGConfig
from jsarag.trainers.jsa import JSATrainer
from jsarag.trainers.rag import RAGTrainer
from jsarag.trainers.vrag import VRAGTrainer

TRAINERS = {"rag": RAGTrainer, "vrag": VRAGTrainer, "jsa": JSATrainer}

__all__ = ["TRAINERS", "TrainConfig", "RAGConfig", "VRAGConfig", "JSAConfig", "RAGTrainer", "VRAGTrainer", "JSATrainer"]
