"""Where the Airflow tasks run: network, ECS cluster, task definition and its log group, new or existing.

Existing resources are referenced by the ids and ARNs in the settings, never looked up, so synth stays offline.
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.executor_config import account_ecr_pattern
from ecs_event_executor.control.task_definitions import derived_prefix, family_of

from infra import nag
from infra.python_function import log_retention
from infra.settings import Settings

EXECUTION_API_SERVER_URL_ENV = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
# Airflow 2.11 workers connect to the metadata database with this URL (an ECS secret, never a plain variable).
METADATA_DB_CONN_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"


def stack_json(stack: Stack, value: object) -> str:
    """Return ``value`` as JSON text that may hold tokens (cluster ARNs): CloudFormation renders them at deploy."""
    return stack.to_json_string(value)


class TaskRuntime(Construct):
    """Network + cluster + task definition. Exposes what the launcher, the rules and the scheduler need."""

    def __init__(
        self, scope: Construct, id_: str, *, settings: Settings, encryption_key: kms.IKey | None = None
    ) -> None:
        super().__init__(scope, id_)
        self.settings = settings
        # Encrypts the task log group the stack creates (workers may log what their tasks handle).
        self.encryption_key = encryption_key
        stack = Stack.of(self)
        self._network(settings)
        self._cluster(settings, stack)
        self._task_definition(settings, stack)
        self._profiles(settings, stack)

    # Network -----------------------------------------------------------------------------------------------
    def _network(self, s: Settings) -> None:
        self.vpc: ec2.IVpc
        if s.vpc_id is not None:
            azs = list(s.availability_zones) or [Fn.select(0, Fn.get_azs()), Fn.select(1, Fn.get_azs())]
            self.vpc = ec2.Vpc.from_vpc_attributes(self, "Vpc", vpc_id=s.vpc_id, availability_zones=azs)
            self.subnet_ids = list(s.subnet_ids)
            self.security_group_ids = list(s.security_group_ids)
            return
        private = s.nat_gateways > 0
        subnets = [ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=20)]
        if private:
            subnets.append(
                ec2.SubnetConfiguration(
                    name="tasks", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=19
                )
            )
        vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            availability_zones=list(s.availability_zones) or None,
            max_azs=None if s.availability_zones else 2,
            nat_gateways=s.nat_gateways,
            subnet_configuration=subnets,
            # The default security group is unused (tasks get their own); restricting it needs a custom resource.
            restrict_default_security_group=False,
        )
        if s.vpc_flow_logs:
            flow_log_group = logs.LogGroup(
                self,
                "FlowLogs",
                retention=log_retention(s.log_retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            )
            vpc.add_flow_log(
                "FlowLog",
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                # Rejected traffic only: what an operator needs to debug connectivity, at a fraction of the cost.
                traffic_type=ec2.FlowLogTrafficType.REJECT,
            )
        else:
            nag.acknowledge(
                vpc,
                "AwsSolutions-VPC7",
                "VPC flow logs were switched off in the settings (vpcFlowLogs: false).",
            )
        self.vpc = vpc
        selection = ec2.SubnetType.PRIVATE_WITH_EGRESS if private else ec2.SubnetType.PUBLIC
        self.subnet_ids = vpc.select_subnets(subnet_type=selection).subnet_ids
        security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=vpc,
            description="Airflow worker tasks: no inbound traffic; outbound to the Airflow API server, AWS and images",
            allow_all_outbound=True,
        )
        self.security_group_ids = [security_group.security_group_id]

    # Cluster -----------------------------------------------------------------------------------------------
    def _cluster(self, s: Settings, stack: Stack) -> None:
        if s.cluster is None:
            cluster = ecs.Cluster(
                self,
                "Cluster",
                cluster_name=s.name_prefix,
                vpc=self.vpc,
                container_insights_v2=ecs.ContainerInsights.ENABLED,
                enable_fargate_capacity_providers=True,
            )
            self.cluster_name = s.name_prefix  # a literal, so IAM resources read as ARNs, not tokens
            self.cluster_arn = cluster.cluster_arn
        elif s.cluster.startswith("arn:"):
            self.cluster_arn = s.cluster
            self.cluster_name = s.cluster.rsplit("/", 1)[-1]
        else:
            self.cluster_name = s.cluster
            self.cluster_arn = stack.format_arn(service="ecs", resource="cluster", resource_name=s.cluster)
        # Task ARNs of this cluster (StopTask, TagResource): arn:...:task/<cluster-name>/<task-id>.
        self.task_arns = stack.format_arn(
            service="ecs", resource="task", resource_name=f"{self.cluster_name}/*"
        )

    # Task definition ---------------------------------------------------------------------------------------
    def _task_definition(self, s: Settings, stack: Stack) -> None:
        self.container_name = s.container_name
        self.log_stream_prefix = s.log_stream_prefix
        if s.task_definition_arn is not None:
            self.task_definition_arn = s.task_definition_arn
            self.task_definition_family_arn = s.task_definition_family_arn or ""
            self.pass_role_arns = [arn for arn in (s.task_role_arn, s.execution_role_arn) if arn]
            assert s.log_group_name is not None
            self.log_group_name = s.log_group_name
            self.log_group_arn = stack.format_arn(
                service="logs",
                resource="log-group",
                resource_name=f"{s.log_group_name}:*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            return
        family = f"{s.name_prefix}-worker"
        # Kept when the stack is deleted, like the tasks table: they are the record of what the tasks did.
        self.log_group = logs.LogGroup(
            self,
            "TaskLogs",
            retention=log_retention(s.log_retention_days),
            removal_policy=RemovalPolicy.RETAIN,
            encryption_key=self.encryption_key,
        )
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Airflow worker tasks: attach the permissions your DAGs need",
        )
        task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            family=family,
            cpu=s.cpu,
            memory_limit_mib=s.memory,
            task_role=self.task_role,
        )
        environment = (
            {EXECUTION_API_SERVER_URL_ENV: s.execution_api_server_url} if s.execution_api_server_url else {}
        )
        task_definition.add_container(
            s.container_name,
            container_name=s.container_name,
            image=self._worker_image(s),
            essential=True,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=s.log_stream_prefix, log_group=self.log_group),
            environment=environment,
            secrets=self._worker_secrets(s),
        )
        if s.worker_image is not None:
            self._acknowledge_image_pull(task_definition)
        if environment:
            nag.acknowledge(
                task_definition,
                "AwsSolutions-ECS2",
                f"The only plain environment variable is {EXECUTION_API_SERVER_URL_ENV}, a URL that is not a "
                "secret; the executor passes task identity through overrides.",
            )
        self.task_definition = task_definition
        self.task_definition_arn = task_definition.task_definition_arn
        self.task_definition_family_arn = stack.format_arn(
            service="ecs", resource="task-definition", resource_name=family
        )
        execution_role = task_definition.obtain_execution_role()
        self.pass_role_arns = [self.task_role.role_arn, execution_role.role_arn]
        self.log_group_name = self.log_group.log_group_name
        self.log_group_arn = self.log_group.log_group_arn

    def _worker_secrets(self, s: Settings) -> dict[str, ecs.Secret]:
        """Return the worker's ECS secrets: Airflow 2.11's metadata database URL when configured.

        ECS reads the secret with the execution role (CDK grants it secretsmanager:GetSecretValue on that secret
        only) and sets the variable in the container: the URL, password included, is never in the task definition.
        """
        if s.metadata_db_secret_arn is None:
            return {}
        secret = secretsmanager.Secret.from_secret_complete_arn(
            self, "MetadataDbSecret", s.metadata_db_secret_arn
        )
        return {METADATA_DB_CONN_ENV: ecs.Secret.from_secrets_manager(secret)}

    # Launch profiles ---------------------------------------------------------------------------------------
    def _profiles(self, s: Settings, stack: Stack) -> None:
        """Resolve the profiles' clusters to ARNs, and collect every cluster, family and derived prefix for IAM."""
        self.profiles_json: dict[str, dict[str, object]] = {}
        cluster_arns = [self.cluster_arn]
        self.cluster_task_arns = [self.task_arns]
        family_arns = [self.task_definition_family_arn]
        for name, profile in s.launch_profiles.items():
            value = profile.as_json()
            if profile.cluster is not None:
                arn = (
                    profile.cluster
                    if profile.cluster.startswith("arn:")
                    else stack.format_arn(service="ecs", resource="cluster", resource_name=profile.cluster)
                )
                value["cluster"] = arn
                if arn not in cluster_arns:
                    cluster_arns.append(arn)
                    cluster_name = arn.rsplit("/", 1)[-1]
                    self.cluster_task_arns.append(
                        stack.format_arn(service="ecs", resource="task", resource_name=f"{cluster_name}/*")
                    )
            family_arn = s.profile_task_definition_family_arn(name)
            if family_arn is not None and family_arn not in family_arns:
                family_arns.append(family_arn)
            self.profiles_json[name] = value
        self.cluster_arns = cluster_arns
        self.family_arns = family_arns
        # Task definitions derived for per-task images: <base family>-derived-<hash>, one prefix per base family.
        self.derived_family_arns = [
            stack.format_arn(
                service="ecs",
                resource="task-definition",
                resource_name=derived_prefix(family_of(self._family_name(arn))) + "*",
            )
            for arn in family_arns
        ]
        self.allowed_images = list(s.allowed_images) or [account_ecr_pattern(stack.account, stack.region)]

    def _family_name(self, family_arn: str) -> str:
        """Return the family name of a family ARN this construct built (a literal after the last '/')."""
        if self.settings.task_definition_arn is None and family_arn == self.task_definition_family_arn:
            return f"{self.settings.name_prefix}-worker"
        return family_arn.rsplit("/", 1)[-1]

    def _worker_image(self, s: Settings) -> ecs.ContainerImage:
        """Return the configured image, or the worker image built from worker/Dockerfile as an image asset.

        An image asset is built and pushed by ``cdk deploy`` (cdk-assets), not by synth: synth only stages the
        build context, so it still needs no Docker.
        """
        if s.worker_image is None:
            return ecs.ContainerImage.from_registry(s.image)
        worker = s.worker_image
        self.worker_image_asset = ecr_assets.DockerImageAsset(
            self,
            "WorkerImage",
            directory=str(worker.context_dir),
            file=worker.file,
            build_args=worker.build_args,
            # The task definition runs on Fargate's default platform, whatever machine builds the image.
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        return ecs.ContainerImage.from_docker_image_asset(self.worker_image_asset)

    def _acknowledge_image_pull(self, task_definition: ecs.FargateTaskDefinition) -> None:
        """Acknowledge the one wildcard an image asset adds to the execution role: ECR's login token."""
        nag.acknowledge(
            task_definition.obtain_execution_role(),
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken (the ECR login that pulls the worker image) has no resource-level "
            "permissions, so it can only be granted on '*'; the pull itself is limited to the asset repository.",
        )

    # What the launcher needs -------------------------------------------------------------------------------
    def profile_environment(self) -> dict[str, str]:
        """Return the launch profiles, which every function reads (the status handler and the reconciler for
        their clusters, the reconciler for their task definitions)."""
        if not self.profiles_json:
            return {}
        return {env_vars.LAUNCH_PROFILES: stack_json(Stack.of(self), self.profiles_json)}

    def cleanup_environment(self) -> dict[str, str]:
        """Return what the reconciler needs to find derived task definitions and how long they may go unused."""
        return {
            env_vars.TASK_DEFINITION: self.task_definition_arn,
            env_vars.DERIVED_TASK_DEFINITION_UNUSED_DAYS: str(
                self.settings.derived_task_definition_unused_days
            ),
        }

    def launch_environment(self) -> dict[str, str]:
        """Return the launcher's launch settings (AwsEcsExecutor's settings, as environment variables)."""
        s = self.settings
        env = {
            env_vars.CLUSTER: self.cluster_arn,
            env_vars.TASK_DEFINITION: self.task_definition_arn,
            env_vars.CONTAINER_NAME: s.container_name,
            env_vars.SUBNETS: Fn.join(",", self.subnet_ids),
            env_vars.SECURITY_GROUPS: Fn.join(",", self.security_group_ids),
            env_vars.ASSIGN_PUBLIC_IP: "true" if s.assign_public_ip else "false",
            env_vars.RUN_TASK_KWARGS: json.dumps(dict(s.run_task_kwargs), separators=(",", ":")),
        }
        if s.capacity_provider_strategy:
            env[env_vars.CAPACITY_PROVIDER_STRATEGY] = json.dumps(
                [dict(e) for e in s.capacity_provider_strategy]
            )
        elif s.launch_type:
            env[env_vars.LAUNCH_TYPE] = s.launch_type
        if s.platform_version and s.uses_fargate:
            env[env_vars.PLATFORM_VERSION] = s.platform_version
        env[env_vars.UNKNOWN_QUEUE] = s.unknown_queue
        env[env_vars.ALLOWED_IMAGES] = Fn.join(",", self.allowed_images)
        return env

    def _on_clusters(self) -> dict[str, dict[str, object]]:
        """The condition that limits an ECS action to this stack's cluster and its profiles' clusters."""
        clusters: object = self.cluster_arns[0] if len(self.cluster_arns) == 1 else list(self.cluster_arns)
        return {"ArnEquals": {"ecs:cluster": clusters}}

    def grant_describe_tasks(self, grantee: iam.IGrantable) -> None:
        """Allow ListTasks on these clusters and DescribeTasks of their tasks: the reconciler finds stopped tasks
        whose final events were lost, the launcher the task an earlier delivery of a late launch started."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DescribeTasksOfThisCluster",
                actions=["ecs:DescribeTasks"],
                resources=list(self.cluster_task_arns),
                conditions=self._on_clusters(),
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                # ListTasks names no task (its only resource type is the optional container instance): it is
                # limited by the ecs:cluster condition to these clusters.
                sid="ListTasksOfThisCluster",
                actions=["ecs:ListTasks"],
                resources=["*"],
                conditions=self._on_clusters(),
            )
        )
        role = grantee.grant_principal
        if isinstance(role, Construct):
            nag.acknowledge_wildcard_resource(
                role,
                "*",
                "ListTasks has no task resource (only the optional container instance); the ecs:cluster condition "
                "limits it to this stack's and its profiles' clusters, and it returns task ARNs only.",
            )
            for task_arns in self.cluster_task_arns:
                nag.acknowledge_wildcard_resource(
                    role,
                    task_arns,
                    "Task ids are assigned by ECS at launch, so DescribeTasks names the cluster's tasks "
                    "(task/<cluster>/*), with the ecs:cluster condition; it reads task state and nothing else.",
                )

    def grant_derived_cleanup(self, grantee: iam.IGrantable) -> None:
        """Allow the reconciler to list derived task definitions and deregister them (their families only)."""
        principal = grantee.grant_principal
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListTaskDefinitions",  # ECS supports no resource for the List actions
                actions=["ecs:ListTaskDefinitionFamilies", "ecs:ListTaskDefinitions"],
                resources=["*"],
            )
        )
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DeregisterDerivedTaskDefinitions",
                actions=["ecs:DeregisterTaskDefinition"],
                resources=list(self.derived_family_arns),
            )
        )
        if isinstance(principal, Construct):
            self._acknowledge_task_definition_wildcards(
                principal, list_reason="finds derived task definitions"
            )

    def _acknowledge_task_definition_wildcards(self, role: Construct, *, list_reason: str) -> None:
        nag.acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            f"ecs:ListTaskDefinitions, ecs:ListTaskDefinitionFamilies and ecs:DescribeTaskDefinition support no "
            f"resource-level permission in IAM (resource '*'); they only read definitions. The role {list_reason}.",
        )
        for arn in self.derived_family_arns:
            nag.acknowledge_wildcard_resource(
                role,
                arn,
                "Task definitions derived for per-task images are named <base family>-derived-<hash of the "
                "definition>: the hash is only known at launch, so the family prefix is the narrowest name.",
            )

    def grant_launch(self, grantee: iam.IGrantable) -> None:
        """Allow RunTask of the worker and profile task definitions (and those derived from them for per-task
        images) on the stack's and the profiles' clusters, registering derived ones, StopTask of their tasks,
        PassRole of the worker roles."""
        on_cluster = self._on_clusters()
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="RunTaskOfTheWorkerTaskDefinitionOnThisCluster",
                actions=["ecs:RunTask"],
                resources=[f"{arn}:*" for arn in self.family_arns] + list(self.derived_family_arns),
                conditions=on_cluster,
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="RegisterTaskDefinitionsForPerTaskImages",
                actions=["ecs:RegisterTaskDefinition"],
                resources=list(self.derived_family_arns),
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadTaskDefinitions",  # the base of a derived definition; no resource-level permission exists
                actions=["ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions"],
                resources=["*"],
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="StopTasksOfThisCluster",  # revoked and terminated task instances
                actions=["ecs:StopTask"],
                resources=list(self.cluster_task_arns),
                conditions=on_cluster,
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TagTasksItStarts",  # RunTask with the cost tags (and runTaskKwargs' or a task's own)
                actions=["ecs:TagResource"],
                resources=list(self.cluster_task_arns),
                conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
            )
        )
        role = grantee.grant_principal
        if isinstance(role, Construct):
            for family_arn in self.family_arns:
                nag.acknowledge_wildcard_resource(
                    role,
                    f"{family_arn}:*",
                    "Every revision of a worker task definition family (the default's or a launch profile's; a "
                    "redeploy adds revisions), and only on the stack's and the profiles' clusters (ecs:cluster).",
                )
            for task_arns in self.cluster_task_arns:
                nag.acknowledge_wildcard_resource(
                    role,
                    task_arns,
                    "Task ids are assigned by ECS at launch, so StopTask and TagResource name the cluster's tasks "
                    "(task/<cluster>/*), with the ecs:cluster or ecs:CreateAction=RunTask condition.",
                )
            self._acknowledge_task_definition_wildcards(
                role, list_reason="reads the base of a derived definition"
            )
        if self.pass_role_arns:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="PassTheWorkerTaskRoles",
                    actions=["iam:PassRole"],
                    resources=self.pass_role_arns,
                    conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                )
            )
