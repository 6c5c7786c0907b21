# Where the worker tasks run: the given subnets and security groups, or a small VPC created here
# (private subnets across az_count AZs, an S3 gateway endpoint, and egress through one NAT
# gateway and/or interface endpoints).

locals {
  create_network = length(var.subnet_ids) == 0
  azs            = slice(data.aws_availability_zones.available.names, 0, var.az_count)

  task_subnet_ids         = local.create_network ? aws_subnet.private[*].id : var.subnet_ids
  task_security_group_ids = local.create_network ? [aws_security_group.tasks[0].id] : var.security_group_ids

  interface_endpoints = local.create_network && var.interface_endpoints ? toset(["ecr.api", "ecr.dkr", "logs", "sqs"]) : toset([])
}

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11:Flow logs are billed per GB and the tasks only talk to AWS APIs; enable them on this VPC if your policy requires it.
  count = local.create_network ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # interface endpoints' private DNS names
  tags                 = { Name = var.name }
}

# The default security group of a new VPC allows all traffic between its members: take every
# rule away so nothing relies on it.
resource "aws_default_security_group" "this" {
  count = local.create_network ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.name}-default-unused" }
}

resource "aws_subnet" "private" {
  count = local.create_network ? var.az_count : 0

  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  map_public_ip_on_launch = false
  tags                    = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_route_table" "private" {
  count = local.create_network ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = local.create_network ? var.az_count : 0

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

# S3 (sources, outputs and ECR's image layers) through the free gateway endpoint, never the NAT.
resource "aws_vpc_endpoint" "s3" {
  count = local.create_network ? 1 : 0

  vpc_id            = aws_vpc.this[0].id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private[0].id]
  tags              = { Name = "${var.name}-s3" }
}

# --- egress through one NAT gateway (in a /28 public subnet that holds nothing else) ---------

resource "aws_internet_gateway" "this" {
  count = local.create_network && var.nat_gateway ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = var.name }
}

resource "aws_subnet" "public" {
  count = local.create_network && var.nat_gateway ? 1 : 0

  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = local.azs[0]
  cidr_block              = cidrsubnet(var.vpc_cidr, 12, 4095)
  map_public_ip_on_launch = false
  tags                    = { Name = "${var.name}-nat" }
}

resource "aws_route_table" "public" {
  count = local.create_network && var.nat_gateway ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this[0].id
  }
  tags = { Name = "${var.name}-nat" }
}

resource "aws_route_table_association" "public" {
  count = local.create_network && var.nat_gateway ? 1 : 0

  subnet_id      = aws_subnet.public[0].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_eip" "nat" {
  #checkov:skip=CKV2_AWS_19:Attached to the NAT gateway below (allocation_id); some checkov versions miss count-indexed references.
  count = local.create_network && var.nat_gateway ? 1 : 0

  domain = "vpc"
  tags   = { Name = "${var.name}-nat" }
}

resource "aws_nat_gateway" "this" {
  count = local.create_network && var.nat_gateway ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = { Name = var.name }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route" "private_nat" {
  count = local.create_network && var.nat_gateway ? 1 : 0

  route_table_id         = aws_route_table.private[0].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[0].id
}

# --- the tasks' security group and the optional interface endpoints ---------------------------

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:Attached at run time: the scaler passes it to RunTask (QP_SECURITY_GROUPS).
  count = local.create_network ? 1 : 0

  name        = "${var.name}-tasks"
  description = "qp worker tasks: no inbound, HTTPS out to AWS APIs"
  vpc_id      = aws_vpc.this[0].id

  egress {
    description = "HTTPS to S3, SQS, ECR and CloudWatch Logs (through the endpoints or the NAT gateway)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "endpoints" {
  #checkov:skip=CKV2_AWS_5:Attached to the interface endpoints below (security_group_ids); some checkov versions miss count-indexed references.
  count = length(local.interface_endpoints) > 0 ? 1 : 0

  name        = "${var.name}-endpoints"
  description = "qp interface endpoints: HTTPS from the worker tasks"
  vpc_id      = aws_vpc.this[0].id

  ingress {
    description     = "HTTPS from the worker tasks"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = [aws_security_group.tasks[0].id]
  }
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoints

  vpc_id              = aws_vpc.this[0].id
  service_name        = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
  tags                = { Name = "${var.name}-${each.key}" }
}
