//! Pages for agents, their knowledge base and their conversations.
