"""The seed's gate in a real Zuul.

Zuul 14.3.0's own harness (``tests/base.py`` of its source distribution,
``AnsibleZuulTestCase``) runs the real scheduler, executor (ansible-playbook
in bubblewrap, with the Ansible environments zuul-manage-ansible made and
this collection installed into each), merger and SQL reporter against a
fake Gerrit. The job's node is this machine over SSH (root@127.0.0.1).

The config project gets the site jobs of ``zuul.d/jobs.yaml`` and the
playbooks of ``playbooks/`` as an operator copies them (docs/zuul-setup.md
section 3): the registry host and port filled in, the password encrypted
with the project's public key, the registry's certificate added. Only the
tenant, the pipelines, the base job and the two test projects are fixtures
(``fixtures/``).

Run by scripts/zuul-test.sh, which installs and starts what this needs.
"""

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.request

import bcrypt

import tests.base
from tests.base import AnsibleZuulTestCase
from zuul.lib import encryption

# scripts/zuul-test.sh puts the harness on PYTHONPATH for this process
# only: the executor hands its environment to ansible-playbook.
os.environ.pop('PYTHONPATH', None)

REPO = os.environ['SPECULATIVE_REPO']
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, 'fixtures')
# The harness gives every project this key pair (fixtures/secrets.json,
# its private key protected with the keystore password the harness sets).
KEYSTORE_PASSWORD = b'keystorepassword'

OURS = 'speculative.images.'

MANIFEST_TYPES = ', '.join([
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.docker.distribution.manifest.list.v2+json',
    'application/vnd.docker.distribution.manifest.v2+json',
])


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Registry:
    """Debian's docker-registry (distribution 2.8) with TLS and htpasswd,
    configured as examples/intermediate-registry/ configures it."""

    def __init__(self, root, name, username, delete):
        self.root = os.path.join(root, name)
        os.makedirs(self.root)
        self.port = free_port()
        self.username = username
        self.delete = delete
        self.password = base64.b32encode(os.urandom(15)).decode().lower()
        self.crt = os.path.join(self.root, 'domain.crt')
        self.key = os.path.join(self.root, 'domain.key')
        subprocess.run(
            ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
             '-days', '2', '-subj', '/CN=127.0.0.1', '-keyout', self.key,
             '-out', self.crt, '-addext',
             'subjectAltName=IP:127.0.0.1,DNS:localhost'],
            check=True, capture_output=True)
        with open(self.crt) as f:
            self.cert = f.read()
        self.password_bcrypt = bcrypt.hashpw(
            self.password.encode(), bcrypt.gensalt(rounds=5)).decode()
        self.log = open(os.path.join(self.root, 'registry.log'), 'w')
        self.proc = subprocess.Popen(
            self.command(), stdout=self.log, stderr=subprocess.STDOUT)
        self.context = ssl.create_default_context(cafile=self.crt)
        for _attempt in range(100):
            try:
                self.request('/v2/')
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise RuntimeError('registry %s did not start' % name)

    def command(self):
        """Write the server's configuration; the command that serves it."""
        # distribution reads the $2a$ spelling of bcrypt.
        with open(os.path.join(self.root, 'htpasswd'), 'w') as f:
            f.write('%s:%s\n' % (
                self.username,
                self.password_bcrypt.replace('$2b$', '$2a$', 1)))
        config = os.path.join(self.root, 'config.yml')
        with open(config, 'w') as f:
            f.write(textwrap.dedent(f"""\
                version: 0.1
                log:
                  level: warn
                storage:
                  filesystem:
                    rootdirectory: {self.root}/data
                  delete:
                    enabled: {'true' if self.delete else 'false'}
                http:
                  addr: "127.0.0.1:{self.port}"
                  tls:
                    certificate: {self.crt}
                    key: {self.key}
                auth:
                  htpasswd:
                    realm: Registry Realm
                    path: {self.root}/htpasswd
                """))
        return ['docker-registry', 'serve', config]

    @property
    def authority(self):
        return '127.0.0.1:%d' % self.port

    def request(self, path, method='GET'):
        req = urllib.request.Request(
            'https://%s%s' % (self.authority, path), method=method,
            headers={'Accept': MANIFEST_TYPES})
        token = base64.b64encode(
            ('%s:%s' % (self.username, self.password)).encode()).decode()
        req.add_header('Authorization', 'Basic ' + token)
        with urllib.request.urlopen(req, context=self.context,
                                    timeout=30) as resp:
            return resp.headers, resp.read()

    def digest(self, repository, tag):
        """The manifest digest of repository:tag, None when absent."""
        try:
            headers, _body = self.request(
                '/v2/%s/manifests/%s' % (repository, tag), method='HEAD')
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        return headers['Docker-Content-Digest']

    def tags(self, repository):
        try:
            _headers, body = self.request('/v2/%s/tags/list' % repository)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise
        return sorted(json.loads(body).get('tags') or [])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


class OurRegistry(Registry):
    """This project's registry server (`speculative-images serve`), the
    stand-in for Docker Hub: like Hub (through its API) and unlike
    distribution 2.8, it deletes a tag without the manifest, which is what
    promote needs to remove the temporary tag."""

    BINARY = os.path.join(
        REPO, 'target', 'x86_64-unknown-linux-gnu', 'release',
        'speculative-images')

    def command(self):
        config = os.path.join(self.root, 'config.json')
        with open(config, 'w') as f:
            json.dump({
                'listen': ['127.0.0.1:%d' % self.port],
                'tls': {'cert': self.crt, 'key': self.key},
                'storage': os.path.join(self.root, 'data'),
                'users': [{'username': self.username,
                           'password_bcrypt': self.password_bcrypt}],
                'token_secret': os.urandom(32).hex(),
                'anonymous_pull': False,
            }, f)
        return [self.BINARY, 'serve', '--config', config]


class SiteRegistry(Registry):
    """This project's registry server as a site's intermediate registry,
    configured by examples/intermediate-registry/registry.yaml as shipped,
    moved under this test's directory and onto its port: htpasswd users
    (zuul read-write), no anonymous pulls, delegated pull-only tokens."""

    def command(self):
        for sub in ('certs', 'auth', 'lib'):
            os.makedirs(os.path.join(self.root, sub), mode=0o700,
                        exist_ok=True)
        shutil.copy(self.crt, os.path.join(self.root, 'certs', 'domain.crt'))
        shutil.copy(self.key, os.path.join(self.root, 'certs', 'domain.key'))
        with open(os.path.join(self.root, 'auth', 'htpasswd'), 'w') as f:
            f.write('%s:%s\n' % (self.username, self.password_bcrypt))
        with open(os.path.join(REPO, 'examples', 'intermediate-registry',
                               'registry.yaml')) as f:
            config = f.read()
        for old, new in (
                ('listen: ["0.0.0.0:5000", "[::]:5000"]',
                 'listen: ["127.0.0.1:%d"]' % self.port),
                ('https://insecure-ci-registry.example.org:5000',
                 'https://127.0.0.1:%d' % self.port)):
            config = replace_once(config, old, new)
        config = config.replace('/var/registry', self.root)
        config = config.replace('/var/lib/speculative-images',
                                os.path.join(self.root, 'lib'))
        path = os.path.join(self.root, 'registry.yaml')
        with open(path, 'w') as f:
            f.write(config)
        return [OurRegistry.BINARY, 'serve', '--config', path]


def encrypt(plaintext):
    """The !encrypted/pkcs1-oaep value `zuul-client encrypt` prints for
    plaintext, with the project's public key."""
    with open(os.path.join(tests.base.FIXTURE_DIR, 'secrets.json')) as f:
        pem = json.load(f)['keys'][0]['private_key'].encode()
    _private_key, public_key = encryption.deserialize_rsa_keypair(
        pem, KEYSTORE_PASSWORD)
    ciphertext = encryption.encrypt_pkcs1_oaep(plaintext.encode(), public_key)
    return '!encrypted/pkcs1-oaep\n  - ' + base64.b64encode(
        ciphertext).decode()


def yaml_block(text, indent):
    """text as a YAML literal block at indent."""
    pad = ' ' * indent
    return '|\n' + ''.join(pad + line + '\n' for line in text.splitlines())


def replace_once(text, old, new):
    if text.count(old) != 1:
        raise AssertionError('expected %r once in the shipped file' % old)
    return text.replace(old, new)


class TestSpeculativeGate(AnsibleZuulTestCase):
    config_file = os.path.join(FIXTURES, 'zuul.conf')
    # Set in setUp, after the fixture tree is written.
    tenant_config_file = None
    # Builds go straight under $ZUUL_TEST_ROOT/zuul-test, no random
    # directory in between: SSH's ControlPath (a Unix socket, at most 104
    # bytes) lives in each build's directory.
    use_tmpdir = False
    # The site's intermediate registry: Debian's docker-registry, as the
    # seed deploys registry:2.
    intermediate_registry = Registry

    def setUp(self):
        self.stop_buildset_registries()
        self.work = tempfile.mkdtemp(
            prefix='g', dir=os.environ.get('ZUUL_TEST_ROOT'))
        # The user the shipped secret names; deletes off, as in the seed.
        self.intermediate = self.intermediate_registry(
            self.work, 'intermediate', 'zuul', delete=False)
        # The user the projects' secrets name; promote deletes tags.
        self.target = OurRegistry(self.work, 'target', 'zuultest',
                                  delete=True)
        self.app_bsr_port = free_port()
        self.consumer_bsr_port = free_port()
        self.tenant_config_file = self.write_fixtures()
        super().setUp()
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)
        self.addCleanup(self.stop_buildset_registries)
        self.addCleanup(self.intermediate.stop)
        self.addCleanup(self.target.stop)
        self.wait_timeout = 600
        self.executor_server.keep_jobdir = True
        self.executor_server.verbose = True
        nodepool = self.fake_nodepool
        nodepool.remote_ansible = True
        nodepool.python_path = '/usr/bin/python3'
        nodepool.connection_port = int(os.environ['SPECULATIVE_ZUUL_SSH_PORT'])
        with open(os.environ['SPECULATIVE_ZUUL_HOST_KEY']) as f:
            nodepool.host_keys = [' '.join(f.read().split()[:2])]

    def stop_buildset_registries(self):
        """Stop what the jobs' buildset registries left on this node. The
        seed's jobs leave the registry to die with the node; this node
        outlives every build."""
        for name in ('app', 'consumer'):
            root = '/tmp/zt-bsr-%s' % name
            try:
                with open(os.path.join(root, 'registry.pid')) as f:
                    os.kill(int(f.read().split()[0]), 15)
            except (OSError, ValueError):
                pass
            shutil.rmtree(root, ignore_errors=True)

    def setup_config(self, config_file):
        config = super().setup_config(config_file)
        config.set('executor', 'ansible_root',
                   os.environ['SPECULATIVE_ZUUL_ANSIBLE_ROOT'])
        return config

    # -- the tenant's repositories --------------------------------------

    def write_fixtures(self):
        tree = os.path.join(self.work, 'tenant')
        shutil.copytree(FIXTURES, tree)
        git = os.path.join(tree, 'git')
        # The config project: the site jobs and their playbooks, as an
        # operator copies them (docs/zuul-setup.md section 3).
        config = os.path.join(git, 'zuultest_config')
        shutil.copytree(os.path.join(REPO, 'playbooks'),
                        os.path.join(config, 'playbooks'), dirs_exist_ok=True)
        with open(os.path.join(REPO, 'zuul.d', 'jobs.yaml')) as f:
            jobs = f.read()
        jobs = replace_once(jobs, 'host: insecure-ci-registry.example.org',
                            'host: 127.0.0.1')
        jobs = replace_once(jobs, 'port: 5000',
                            'port: %d' % self.intermediate.port)
        jobs = replace_once(
            jobs, 'password: !encrypted/pkcs1-oaep\n'
            '        - REPLACE-WITH-THE-OUTPUT-OF-zuul-client-encrypt\n',
            'password: ' + encrypt(self.intermediate.password).replace(
                '\n', '\n      ') + '\n'
            '      cert: ' + yaml_block(self.intermediate.cert, 8))
        with open(os.path.join(config, 'zuul.d', 'jobs.yaml'), 'w') as f:
            f.write(jobs)
        # This repository, which defines promote-docker-image.
        collection = os.path.join(git, 'speculative_images')
        os.makedirs(os.path.join(collection, 'zuul.d'))
        for family in ('docker-image', 'container-image'):
            os.makedirs(os.path.join(collection, 'playbooks', family))
        for path in ('zuul.d/collection-jobs.yaml',
                     'playbooks/docker-image/promote.yaml',
                     'playbooks/container-image/promote.yaml'):
            shutil.copy(os.path.join(REPO, path),
                        os.path.join(collection, path))
        values = {
            'APP_BSR_PORT': str(self.app_bsr_port),
            'CONSUMER_BSR_PORT': str(self.consumer_bsr_port),
            'TARGET_PORT': str(self.target.port),
            'TARGET_CERT': yaml_block(self.target.cert, 8),
            'TARGET_PASSWORD': encrypt(self.target.password).replace(
                '\n', '\n        '),
        }
        # The projects' .zuul.yaml is a template (zuul.yaml.in: its
        # placeholders are no YAML) until the test fills it in.
        for project in ('zuultest_app', 'zuultest_consumer'):
            template = os.path.join(git, project, 'zuul.yaml.in')
            with open(template) as f:
                text = f.read()
            for name, value in values.items():
                text = text.replace('@@%s@@' % name, value)
            with open(os.path.join(git, project, '.zuul.yaml'), 'w') as f:
                f.write(text)
            os.remove(template)
        return os.path.join(tree, 'main.yaml')

    # -- what Zuul recorded ------------------------------------------------

    def result_data(self, build):
        with open(build.jobdir.result_data_file) as f:
            return json.load(f)

    def job_output(self, build):
        with open(os.path.join(self.jobdir_root, build.uuid, 'work', 'logs',
                               'job-output.txt')) as f:
            return f.read()

    def task_result(self, build, action):
        """The result Zuul recorded (job-output.json) of the one task of
        build that ran action."""
        with open(os.path.join(self.jobdir_root, build.uuid, 'work', 'logs',
                               'job-output.json')) as f:
            playbooks = json.load(f)
        results = [result
                   for playbook in playbooks
                   for play in playbook['plays']
                   for task in play['tasks']
                   for result in task['hosts'].values()
                   if result.get('action') == action]
        self.assertEqual(len(results), 1, action)
        return results[0]

    def sql_build(self, uuid):
        connection = self.scheds.first.sched.sql.connection
        builds = connection.getBuilds(uuid=uuid)
        self.assertEqual(len(builds), 1, uuid)
        return builds[0]

    def assert_success(self, name, change):
        build = self.getJobFromHistory(name, result=None)
        with self.jobLog(build):
            self.assertEqual(build.result, 'SUCCESS',
                             '%s of %s' % (name, change))
        return build

    def assert_container_artifact(self, build, repository, tag='latest'):
        """build returned one container-image artifact for repository:tag,
        Zuul recorded it, and the intermediate registry holds it."""
        artifacts = self.result_data(build)['data']['zuul']['artifacts']
        url = 'docker://%s/%s:%s_%s' % (
            self.intermediate.authority, repository, build.uuid, tag)
        self.assertEqual(
            [(a['name'], a['url'], a['metadata']['type'],
              a['metadata']['repository'], a['metadata']['tag'])
             for a in artifacts],
            [('%s:%s' % (repository, tag), url, 'container_image',
              repository, tag)])
        recorded = self.sql_build(build.uuid).artifacts
        self.assertEqual([(a.name, a.url) for a in recorded],
                         [('%s:%s' % (repository, tag), url)])
        digest = self.intermediate.digest(
            repository, '%s_%s' % (build.uuid, tag))
        self.assertIsNotNone(digest, url)
        return digest

    # -- scenarios -----------------------------------------------------------

    def test_check_producers_only(self):
        """Check, producers only: the build job starts its own buildset
        registry, builds, pushes to the intermediate registry and returns
        the artifact."""
        A = self.fake_gerrit.addFakeChange(
            'zuultest/app', 'master', 'A',
            files={'app.txt': 'app from change A\n'})
        self.fake_gerrit.addEvent(A.getPatchsetCreatedEvent(1))
        self.waitUntilSettled()

        self.assertHistory([
            dict(name='app-build-image', result='SUCCESS', changes='1,1'),
        ])
        build = self.assert_success('app-build-image', 'A')
        self.assert_container_artifact(build, 'zuultest/app')
        self.assertIn('buildset_registry', self.result_data(build)
                      ['secret_data'])
        self.assertEqual(A.patchsets[0]['approvals'][0]['value'], '1')
        # A check never publishes.
        self.assertEqual(self.target.tags('zuultest/app'), [])

    def test_gate_two_projects_then_promote(self):
        """Gate: B (zuultest/consumer, FROM zuultest/app) queued behind A
        (zuultest/app) in a shared queue, each with its own image build
        job; B's build and test get A's speculative image through B's own
        buildset registry. Promote after B merges: the final tag is the
        image B's gate tested, the temporary tag is gone."""
        A = self.fake_gerrit.addFakeChange(
            'zuultest/app', 'master', 'A',
            files={'app.txt': 'app from change A\n'})
        B = self.fake_gerrit.addFakeChange(
            'zuultest/consumer', 'master', 'B',
            files={'consumer.txt': 'consumer from change B\n'})
        B.data['commitMessage'] = '%s\n\nDepends-On: %s\n' % (
            B.subject, A.data['url'])
        # Gerrit submits only reviewed changes.
        A.addApproval('Code-Review', 2)
        B.addApproval('Code-Review', 2)
        self.fake_gerrit.addEvent(A.addApproval('Approved', 1))
        self.fake_gerrit.addEvent(B.addApproval('Approved', 1))
        self.waitUntilSettled()

        self.assertHistory([
            dict(name='yoursite-buildset-registry', result='SUCCESS',
                 changes='1,1'),
            dict(name='app-upload-image', result='SUCCESS', changes='1,1'),
            dict(name='yoursite-buildset-registry', result='SUCCESS',
                 changes='1,1 2,1'),
            dict(name='consumer-upload-image', result='SUCCESS',
                 changes='1,1 2,1'),
            dict(name='consumer-test-image', result='SUCCESS',
                 changes='1,1 2,1'),
        ], ordered=False)
        self.assertEqual(A.data['status'], 'MERGED')
        self.assertEqual(B.data['status'], 'MERGED')

        by_name = {(b.name, b.changes): b for b in self.history}
        a_registry = by_name[('yoursite-buildset-registry', '1,1')]
        a_upload = by_name[('app-upload-image', '1,1')]
        b_registry = by_name[('yoursite-buildset-registry', '1,1 2,1')]
        b_upload = by_name[('consumer-upload-image', '1,1 2,1')]
        b_test = by_name[('consumer-test-image', '1,1 2,1')]

        # Each buildset-registry job paused with its registry as secret
        # data and was resumed after its children: its post-run (the
        # push) ran after they ended.
        for registry, children in ((a_registry, [a_upload]),
                                   (b_registry, [b_upload, b_test])):
            results = self.result_data(registry)
            self.assertTrue(results['data']['zuul']['pause'])
            self.assertEqual(
                sorted(results['secret_data']['buildset_registry']),
                ['cert', 'host', 'password', 'port', 'username'])
            end = self.sql_build(registry.uuid).end_time
            for child in children:
                self.assertLessEqual(self.sql_build(child.uuid).end_time, end)

        # A's image, as its gate build made it, in the intermediate
        # registry.
        a_digest = self.assert_container_artifact(a_upload, 'zuultest/app')

        # B's buildset registry was filled with A's image, and B's test
        # saw it there and inside the consumer image B built FROM it; the
        # node's docker held no zuultest image before each of B's jobs.
        # Zuul passes B no artifacts of A (B has its own provider job, issue
        # 9's defect 4): the pull step found A through zuul.items and the
        # change records A's pushes left, and says so in its result data.
        ahead = self.result_data(b_registry)['data']['speculative_images'][
            'changes_ahead']
        self.assertEqual([(c['project'], c['change'], c['patchset'])
                          for c in ahead],
                         [('review.example.com/zuultest/app', '1', '1')])
        # A's upload job and its buildset-registry job both pushed it:
        # pulled once.
        self.assertEqual(ahead[0]['images'], ['zuultest/app:latest'])
        self.assertIn(a_upload.uuid,
                      [r['build'] for r in ahead[0]['records']])
        seen = self.result_data(b_test)['data']['consumer_test']
        self.assertEqual(seen['app_digest'], a_digest)
        self.assertEqual(seen['files'], ['app from change A',
                                         'consumer from change B'])

        # The gate published both under their temporary tags.
        self.assertEqual(self.target.tags('zuultest/app'), ['change_1_latest'])
        self.assertEqual(self.target.tags('zuultest/consumer'),
                         ['change_2_latest'])
        tested = self.target.digest('zuultest/consumer', 'change_2_latest')
        self.assertEqual(tested, seen['consumer_digest'])

        # Promote, after B merged.
        self.fake_gerrit.addEvent(B.getChangeMergedEvent())
        self.waitUntilSettled()
        promote = self.assert_success('consumer-promote-image', 'B')
        self.assertEqual(promote.pipeline, 'promote')
        self.assertEqual(self.target.digest('zuultest/consumer', 'latest'),
                         tested)
        # The temporary tag is gone (promote deletes it as the target
        # allows: the distribution spec's tag DELETE here, Hub's API on
        # Docker Hub), and nothing was left to warn about.
        result = self.task_result(promote, OURS + 'promote_docker_image')
        self.assertEqual(
            [(p['repository'], p['tag'], p['temporary_tag'], p['digest'])
             for p in result['promoted']],
            [('zuultest/consumer', 'latest', 'change_2_latest', tested)])
        self.assertEqual(result.get('warnings', []), [])
        self.assertEqual(self.target.tags('zuultest/consumer'), ['latest'])

    def test_failing_build_pushes_nothing(self):
        """A build that fails pushes nothing to the intermediate registry
        and returns no artifact; the buildset job's post-run still runs."""
        A = self.fake_gerrit.addFakeChange(
            'zuultest/app', 'master', 'A',
            files={'Dockerfile': 'FROM scratch\nCOPY no-such-file /\n'})
        self.fake_gerrit.addEvent(A.getPatchsetCreatedEvent(1))
        self.waitUntilSettled()

        self.assertHistory([
            dict(name='app-build-image', result='FAILURE', changes='1,1'),
        ])
        build = self.getJobFromHistory('app-build-image')
        self.assertEqual(A.patchsets[0]['approvals'][0]['value'], '-1')
        self.assertNotIn('artifacts', self.result_data(build)
                         .get('data', {}).get('zuul', {}))
        self.assertEqual(self.sql_build(build.uuid).artifacts, [])
        self.assertEqual(self.intermediate.tags('zuultest/app'), [])
        # The post-run still ran (its push skipped, as zuul_success is
        # false there).
        output = self.job_output(build)
        self.assertIn('POST-RUN END RESULT_NORMAL: [trusted : '
                      'review.example.com/zuultest/config/playbooks/'
                      'buildset-registry/post.yaml@master]', output)
        task = output.index('TASK [speculative.images.push_to_intermediate_'
                            "registry : Push this change's images")
        self.assertIn('localhost | skipping', output[task:task + 400])


class TestSpeculativeGateOurIntermediate(TestSpeculativeGate):
    """The gate of two projects with our server as the site's intermediate
    registry: B's buildset registry gets A's image lazily (its manifests
    copied, its layers fetched on demand with a pull-only token the
    intermediate registry issued), and the gate ends on the same digests.
    With docker-registry there (the class above) the pull step copies
    every byte, since distribution issues no tokens."""

    intermediate_registry = SiteRegistry
    # Only the gate: the other scenarios do not pull from the
    # intermediate registry.
    test_check_producers_only = None
    test_failing_build_pushes_nothing = None

    def test_gate_two_projects_then_promote(self):
        super().test_gate_two_projects_then_promote()
        b_registry, = [b for b in self.history
                       if b.name == 'yoursite-buildset-registry'
                       and b.changes == '1,1 2,1']
        returned = self.result_data(b_registry)['data']['speculative_images']
        self.assertEqual(
            [(p['repository'], p['tag'], p['mode'])
             for p in returned['pulled']],
            [('zuultest/app', 'latest', 'lazy')], returned)
        # No reason to fall back (Ansible's templating makes the null '').
        self.assertIn(returned['lazy_reason'], (None, ''), returned)
