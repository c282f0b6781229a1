# What the projection tests share: the comparison of a read model with the
# log.  model_diff_sql() is a query giving "rows:differences" for a table
# model (stream_id, stream_version, pos) filled by a projection of the
# category acct: the rows it holds, and how many of them are not an acct
# event of the log or are missing (0 when every event was applied once).
package OcxModel;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(model_diff_sql);

sub model_diff_sql
{
	return q{
SELECT (SELECT count(*) FROM model) || ':' || (SELECT count(*) FROM (
    (SELECT stream_id, stream_version, pos FROM model
     EXCEPT ALL
     SELECT stream_id, stream_version, global_position FROM ocx.events WHERE stream_id LIKE 'acct-%')
    UNION ALL
    (SELECT stream_id, stream_version, global_position FROM ocx.events WHERE stream_id LIKE 'acct-%'
     EXCEPT ALL
     SELECT stream_id, stream_version, pos FROM model)) d)
};
}

1;
