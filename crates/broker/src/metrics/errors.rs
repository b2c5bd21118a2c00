//! The error codes a response carries, counted the way Kafka's ErrorsPerSec counts them: one
//! per top-level code and one per entry (topic, partition, group, resource) of the response,
//! `NONE` included.

use strom_protocol::ResponseKind;

/// Calls `count` with every error code of `response`.
pub fn for_each_code(response: &ResponseKind, mut count: impl FnMut(i16)) {
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| count(p.error_code)),
        ResponseKind::Fetch(r) => {
            if r.error_code != 0 || r.responses.is_empty() {
                count(r.error_code);
            }
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| count(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        ResponseKind::Metadata(r) => {
            if r.topics.is_empty() {
                count(r.error_code);
            }
            r.topics.iter().for_each(|t| count(t.error_code));
        }
        ResponseKind::ApiVersions(r) => count(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| count(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| count(t.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|x| count(x.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|x| count(x.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|x| count(x.error_code))
        }
        ResponseKind::DescribeLogDirs(r) => {
            count(r.error_code);
            r.results.iter().for_each(|x| count(x.error_code));
        }
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|x| count(x.error_code)),
        ResponseKind::DescribeCluster(r) => count(r.error_code),
        ResponseKind::FindCoordinator(r) => {
            if r.coordinators.is_empty() {
                count(r.error_code);
            }
            r.coordinators.iter().for_each(|c| count(c.error_code));
        }
        ResponseKind::JoinGroup(r) => count(r.error_code),
        ResponseKind::SyncGroup(r) => count(r.error_code),
        ResponseKind::Heartbeat(r) => count(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            count(r.error_code);
            r.members.iter().for_each(|m| count(m.error_code));
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            if r.groups.is_empty() {
                count(r.error_code);
                r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| count(p.error_code));
            }
            for g in &r.groups {
                count(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| count(p.error_code));
            }
        }
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| count(g.error_code)),
        ResponseKind::ListGroups(r) => count(r.error_code),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| count(g.error_code)),
        ResponseKind::OffsetDelete(r) => {
            count(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| count(p.error_code));
        }
        _ => {}
    }
}
