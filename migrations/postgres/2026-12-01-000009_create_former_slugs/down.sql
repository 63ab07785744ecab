DROP TABLE agent_former_slugs;
DROP TABLE organization_former_slugs;
