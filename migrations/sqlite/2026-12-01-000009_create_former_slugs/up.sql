-- Addresses an organization or agent used before its slug changed. They keep
-- leading to it (embedded widgets, shared chat links) and nobody else can
-- take them, so an old link never reaches another company's agent.

CREATE TABLE organization_former_slugs (
    slug TEXT PRIMARY KEY NOT NULL CHECK (length(slug) BETWEEN 2 AND 63),
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    retired_at TIMESTAMP NOT NULL
);
CREATE INDEX organization_former_slugs_organization
    ON organization_former_slugs (organization_id, retired_at);

CREATE TABLE agent_former_slugs (
    organization_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    slug TEXT NOT NULL CHECK (length(slug) BETWEEN 2 AND 63),
    agent_id INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    retired_at TIMESTAMP NOT NULL,
    PRIMARY KEY (organization_id, slug)
);
CREATE INDEX agent_former_slugs_agent ON agent_former_slugs (agent_id, retired_at);
