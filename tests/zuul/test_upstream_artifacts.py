"""Zuul's hand-over of artifacts across changes, as Zuul 14.3.0 does it.

The reproduction of docs/zuul-artifacts-across-changes.md, in Zuul's own
harness with its fake executor (no Ansible): a change whose own buildset
has a job that provides what its requires job needs gets none of the
artifacts of the changes ahead. This is why pull_from_intermediate_registry
also reads change records (defect 4 of issue 9). Should a Zuul release
change this, the first test fails, and the docs must say from which
release the records are no longer needed.

Run by scripts/zuul-test.sh beside test_gate.py.
"""

import os

from tests.base import ZuulTestCase, simple_layout

LAYOUTS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'fixtures', 'layouts')
ARTIFACT = {'name': 'image', 'url': 'http://example.com/image',
            'metadata': {'type': 'container_image'}}


class TestArtifactsOfChangesAhead(ZuulTestCase):
    config_file = 'zuul-sql-driver-postgres.conf'

    def setup_config(self, config_file):
        # No playbook runs, but the executor still needs Ansible to exist.
        config = super().setup_config(config_file)
        config.set('executor', 'ansible_root',
                   os.environ['SPECULATIVE_ZUUL_ANSIBLE_ROOT'])
        return config

    def gate_two_changes(self):
        """A (project1) provides images; B (project2) is approved behind
        it. Returns the `zuul` variable Zuul gave B's image-registry job,
        which starts while A is still in the queue (its image-user job
        runs)."""
        self.executor_server.hold_jobs_in_build = True
        A = self.fake_gerrit.addFakeChange('org/project1', 'master', 'A')
        self.executor_server.returnData(
            'image-builder', A, {'zuul': {'artifacts': [ARTIFACT]}})
        B = self.fake_gerrit.addFakeChange('org/project2', 'master', 'B')
        for change in (A, B):
            change.addApproval('Code-Review', 2)
            self.fake_gerrit.addEvent(change.addApproval('Approved', 1))
        self.waitUntilSettled()
        # B's requires job waits for A's provider.
        self.assertEqual([b.name for b in self.builds], ['image-builder'])
        self.executor_server.release('^image-builder$')
        self.waitUntilSettled()
        running = {b.name: b for b in self.builds}
        self.assertEqual(sorted(running), ['image-registry', 'image-user'])
        zuul = running['image-registry'].parameters['zuul']
        self.executor_server.hold_jobs_in_build = False
        self.executor_server.release()
        self.waitUntilSettled()
        self.assertEqual(A.data['status'], 'MERGED')
        self.assertEqual(B.data['status'], 'MERGED')
        return zuul

    @simple_layout(os.path.join(LAYOUTS, 'own-provider.yaml'))
    def test_an_own_provider_hides_the_artifacts_of_changes_ahead(self):
        zuul = self.gate_two_changes()
        # Documented: A's artifacts are made available to the requires
        # job. Zuul 14.3.0 passes none (the key is absent).
        self.assertNotIn('artifacts', zuul)
        # What our pull step reads instead: the change ahead is in items.
        self.assertEqual([i['change'] for i in zuul['items']], ['1', '2'])

    @simple_layout(os.path.join(LAYOUTS, 'no-own-provider.yaml'))
    def test_without_an_own_provider_the_artifacts_arrive(self):
        zuul = self.gate_two_changes()
        self.assertEqual([a['url'] for a in zuul.get('artifacts', [])],
                         [ARTIFACT['url']])
        self.assertEqual(zuul['artifacts'][0]['change'], '1')
