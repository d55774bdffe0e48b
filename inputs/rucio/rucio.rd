<?xml version="1.0" encoding="utf-8"?>
<!-- rucio/rucio: files of a Rucio data lake, published to the VO.

The table is fed from Rucio's POSTGRES_JSON did-meta table (see
rucio_rd.metadata); the cone service is the notebook's
/rucio/rucio/cone/scs.xml.  All logic lives in the rucio_rd package; the
inline code here only calls into it. -->
<resource schema="rucio" resdir=".">
	<meta name="creationDate">2026-11-26T00:00:00Z</meta>
	<meta name="title">Rucio Data Lake Files</meta>
	<meta name="description">
		Files registered in a Rucio data lake whose metadata carries a sky
		position, with a DataLink access URL per file.  The DataLink service
		returns the replica nearest to the client first, the others as
		fallbacks, and the SODA cutout services of the sites that hold them.
	</meta>
	<!-- subjects are UAT concepts (http://www.ivoa.net/rdf/uat) -->
	<meta name="subject">radio-astronomy</meta>
	<meta name="subject">sky-surveys</meta>
	<meta name="creator.name">rucio_rd</meta>
	<meta name="contentLevel">Research</meta>
	<meta name="type">Archive</meta>
	<meta name="coverage.waveband">Radio</meta>
	<meta name="source">Rucio did metadata (POSTGRES_JSON plugin)</meta>

	<table id="main" onDisk="True" adql="True" primary="did">
		<meta name="description">
			One row per Rucio file (DID) whose metadata has s_ra, s_dec and
			access_url; the access_url points to this server's DataLink service.
		</meta>
		<!-- Cone search and TAP results declare the DataLink service (a
		descriptor whose ID takes the did column), so that pyvo's
		iter_datalinks and TOPCAT ask for many files in one POST. -->
		<meta name="_associatedDatalinkService">
			<meta name="serviceId">dl</meta>
			<meta name="idColumn">did</meta>
		</meta>
		<!-- pgSphere, not q3c: q3c builds in a seventh of the time (1.4 s
		against 10 s at a million rows) and ivoa.obscore expects it, but its
		cost estimates are so high (hundreds of thousands for a 0.1 degree
		cone) that PostgreSQL's JIT compiles every cone search: 1.9 s each
		instead of milliseconds. -->
		<mixin>//scs#pgs-pos-index</mixin>
		<mixin
			calib_level="COALESCE(calib_level, 2)"
			dataproduct_type="dataproduct_type"
			obs_collection="COALESCE(obs_collection, scope)"
			obs_id="COALESCE(obs_id, did)"
			obs_title="COALESCE(target_name, obs_id, did)"
			obs_publisher_did="'ivo://\getConfig{ivoa}{authority}/~?rucio/' || did"
			access_url="access_url"
			access_format="access_format"
			access_estsize="access_estsize"
			target_name="target_name"
			s_ra="s_ra"
			s_dec="s_dec"
			s_fov="s_fov"
			s_region="CASE WHEN s_fov &gt; 0 AND s_fov &lt; 160 THEN (SELECT spoly(spoint(radians(s_ra) + atan2(sin(a) * sin(r) * cos(d), cos(r) - sin(d) * sin(v)), v) ORDER BY a) FROM (SELECT radians(least(greatest(s_dec, -89.99999), 89.99999)) AS d, atan(tan(radians(s_fov / 2)) / cos(pi() / 8)) AS r) AS field, generate_series(0, 7) AS k, LATERAL (SELECT radians(45 * k) AS a) AS bearing, LATERAL (SELECT asin(sin(d) * cos(r) + cos(d) * sin(r) * cos(a)) AS v) AS vertex) END"
			t_min="t_min"
			t_max="t_max"
			em_min="em_min"
			em_max="em_max"
			facility_name="facility_name"
			instrument_name="instrument_name"
			preview="NULL">//obscore#publish</mixin>

		<column name="did" type="text" ucd="meta.id;meta.main"
			tablehead="DID" verbLevel="1" required="True"
			description="Rucio data identifier, scope:name; the ID the DataLink service takes."/>
		<column name="scope" type="text" ucd="meta.id"
			tablehead="Scope" verbLevel="20" required="True"
			description="Rucio scope of the file."/>
		<column name="name" type="text" ucd="meta.id"
			tablehead="Name" verbLevel="20" required="True"
			description="Rucio name of the file within its scope."/>
		<column name="obs_id" type="text" ucd="meta.id"
			tablehead="Obs. ID" verbLevel="1"
			description="Observation (or data set) identifier from the file's metadata."/>
		<column name="s_ra" type="double precision" unit="deg"
			ucd="pos.eq.ra;meta.main" tablehead="RA" verbLevel="1" required="True"
			description="ICRS right ascension of the centre of the file's footprint."/>
		<column name="s_dec" type="double precision" unit="deg"
			ucd="pos.eq.dec;meta.main" tablehead="Dec" verbLevel="1" required="True"
			description="ICRS declination of the centre of the file's footprint."/>
		<column name="s_fov" type="double precision" unit="deg"
			ucd="phys.angSize;instr.fov" tablehead="FoV" verbLevel="20"
			description="Diameter of the region covered, where the metadata gives it."/>
		<column name="access_url" type="text" ucd="meta.ref.url"
			tablehead="Access" verbLevel="1" required="True" displayHint="type=url"
			description="Where to get the file: this server's DataLink document for the DID.">
			<!-- the text of the link in HTML tables (DaCHS's url display hint) -->
			<property name="anchorText">replicas and cutouts</property>
		</column>
		<column name="access_format" type="text" ucd="meta.code.mime"
			tablehead="Format" verbLevel="1"
			description="MIME type of what access_url returns (a DataLink document)."/>
		<column name="access_estsize" type="bigint" unit="kbyte"
			ucd="phys.size;meta.file" tablehead="Size" verbLevel="15"
			description="Estimated size of the file in kilobytes.">
			<values nullLiteral="-1"/>
		</column>
		<column name="content_type" type="text" ucd="meta.code.mime"
			tablehead="File type" verbLevel="15"
			description="MIME type of the file itself."/>
		<column name="content_length" type="bigint" unit="byte"
			ucd="phys.size;meta.file" tablehead="Bytes" verbLevel="15"
			description="Size of the file in bytes.">
			<values nullLiteral="-1"/>
		</column>
		<column name="dataproduct_type" type="text" ucd="meta.code.class"
			tablehead="Type" verbLevel="15"
			description="ObsCore data product type (image, cube, ...), where known."/>
		<column name="calib_level" type="smallint" ucd="meta.code;obs.calib"
			tablehead="Calib." verbLevel="20"
			description="ObsCore calibration level (0..4), where the metadata gives it; ivoa.obscore, where it is mandatory, shows 2 (calibrated) otherwise.">
			<values nullLiteral="-1"/>
		</column>
		<column name="obs_collection" type="text" ucd="meta.id"
			tablehead="Collection" verbLevel="20"
			description="Collection the file belongs to; defaults to the Rucio scope in ObsCore."/>
		<column name="target_name" type="text" ucd="meta.id;src"
			tablehead="Target" verbLevel="15"
			description="Name of the observed target, where known."/>
		<column name="facility_name" type="text" ucd="meta.id;instr.tel"
			tablehead="Facility" verbLevel="20"
			description="Observatory or facility, where known."/>
		<column name="instrument_name" type="text" ucd="meta.id;instr"
			tablehead="Instrument" verbLevel="20"
			description="Instrument, where known."/>
		<column name="t_min" type="double precision" unit="d"
			ucd="time.start;obs.exposure" tablehead="Start" verbLevel="20"
			description="Start of the observation as MJD, where known."/>
		<column name="t_max" type="double precision" unit="d"
			ucd="time.end;obs.exposure" tablehead="End" verbLevel="20"
			description="End of the observation as MJD, where known."/>
		<column name="em_min" type="double precision" unit="m"
			ucd="em.wl;stat.min" tablehead="λ min" verbLevel="20"
			description="Shortest wavelength covered, where known."/>
		<column name="em_max" type="double precision" unit="m"
			ucd="em.wl;stat.max" tablehead="λ max" verbLevel="20"
			description="Longest wavelength covered, where known."/>
		<column name="datalinks" type="text" ucd="meta.ref"
			tablehead="Extra links" verbLevel="30"
			description="The file's extra links (previews, auxiliary files) from its metadata's datalinks key, as given there (a JSON array, or the text the metadata holds); the DataLink service serves the valid entries."/>
		<column name="meta_id" type="bigint" ucd="meta.id"
			tablehead="Record" verbLevel="30"
			description="Id of the file's record in Rucio's metadata table (kept by the sync).">
			<values nullLiteral="-1"/>
		</column>
		<column name="meta_digest" type="text" ucd="meta.code"
			tablehead="Digest" verbLevel="30"
			description="Hash of the file's metadata record as published (kept by the sync)."/>
		<!-- With the digest, so that the sync compares the published rows with
		the metadata in an index-only scan. -->
		<index columns="meta_id,meta_digest"/>
	</table>

	<!-- dachs imp rucio/rucio is the sync of rucio-rd sync (rucio_rd.sync)
	into the table DaCHS has just made: one set-based bulk load from
	Rucio's POSTGRES_JSON metadata table (rucio_rd.toml, [metadata] dsn and
	table), records without usable s_ra, s_dec or access_url kept apart and
	reported.  DaCHS then builds the indexes and commits, so a failed import
	leaves the published rows as they were.  Day to day, rucio-rd sync keeps
	the table in step without blocking readers. -->
	<data id="import">
		<make table="main">
			<script type="preIndex" lang="python" name="load from Rucio's metadata">
				from rucio_rd import dachs_import
				dachs_import.load(table)
			</script>
		</make>
	</data>

	<service id="cone" allowed="form,scs.xml">
		<meta name="title">Rucio Data Lake Cone Search</meta>
		<meta name="shortName">Rucio cone</meta>
		<meta name="description">
			Finds files of the Rucio data lake by position.  Each row's
			access_url is a DataLink document giving the replica nearest to you.
		</meta>
		<meta name="testQuery.ra">53.75308</meta>
		<meta name="testQuery.dec">-24.93365</meta>
		<meta name="testQuery.sr">0.1</meta>
		<publish render="scs.xml" sets="ivo_managed"/>
		<publish render="form" sets="ivo_managed,local"/>
		<!-- What the form's HTML table shows (DaCHS uses a service's output
		table for HTML only; scs.xml keeps the core's columns by VERB): the
		distance, what and where the file is, and the link to its replicas.
		The other columns can be added under the form's "More output fields". -->
		<outputTable namePath="main">
			<outputField name="_r" type="double precision" unit="deg"
				ucd="pos.distance" tablehead="Distance"
				description="Distance from the cone's centre (computed per query)"
				displayHint="displayUnit=arcmin,sf=2"/>
			<outputField original="obs_id"/>
			<outputField original="did" tablehead="File (Rucio DID)"/>
			<outputField original="s_ra" displayHint="sf=5"/>
			<outputField original="s_dec" displayHint="sf=5"/>
			<outputField original="dataproduct_type"/>
			<!-- DaCHS writes byte sizes as KiB, MiB... itself -->
			<outputField original="content_length" tablehead="Size"/>
			<outputField original="access_url"/>
		</outputTable>
		<scsCore queriedTable="main">
			<!-- Nearest first (DaCHS's default), and among files at the same
			distance in Rucio's registration order of their metadata records,
			so that results[0] is always the same file. -->
			<property name="defaultSortKey">_r,meta_id</property>
			<FEED source="//scs#coreDescs"/>
		</scsCore>
	</service>

	<!-- The DataLink service's parameters besides ID, RESPONSEFORMAT and
	MAXREC (DaCHS's own).  DaCHS has no element for a custom core's
	parameters, so they are the params of this table; the core
	(rucio_rd.dachs_datalink) makes its input keys from them, adding to
	sort's description the methods of rucio_rd.ranking.SORT_METHODS.  They
	are text, so that a bad value is a fault row for each ID, as DataLink
	wants, rather than an error of the whole request. -->
	<table id="dl_parameters" onDisk="False">
		<meta name="description">The parameters of the DataLink service dl.</meta>
		<param name="sort" type="text"
			description="How to order the replicas."/>
		<param name="ranking" type="text"
			description="Which replica to put first: 0 (default) is the nearest, 1 the next..."/>
		<param name="client_ip_address" type="text"
			description="Geolocate this IP address instead of the caller's."/>
		<param name="must_include_soda" type="text"
			description="True: only replicas at sites offering a SODA (cutout) service."/>
	</table>

	<!-- The input parameters that the DataLink answers announce for the
	sites' SODA services (another server's, so DaCHS's own SODA descriptors
	do not apply): one param per parameter, rendered as the PARAMs of each
	service descriptor; ID is preset to the ID that site's service takes for
	the file (rucio_rd.soda), and the parameters the file's extent bounds get
	VALUES.  (Params rather than
	columns: CIRCLE and TIME are reserved words in ADQL.) -->
	<table id="soda_inputs" onDisk="False">
		<meta name="description">Input parameters of the sites' SODA services.</meta>
		<param name="ID" type="text" ucd="meta.id;meta.main"
			description="The dataset to process, as this site's SODA service names it"/>
		<param name="POS" type="text" ucd="pos.outline;obs"
			description="Region to cut out, as a DALI/SODA shape: CIRCLE, RANGE or POLYGON with values"/>
		<param name="CIRCLE" type="double precision[3]" xtype="circle" unit="deg"
			ucd="pos.outline;obs"
			description="Circle to cut out: ICRS RA, Dec and radius in degrees"/>
		<param name="POLYGON" type="double precision[]" xtype="polygon" unit="deg"
			ucd="pos.outline;obs"
			description="Polygon to cut out: ICRS RA, Dec of at least three vertices"/>
		<param name="BAND" type="double precision[2]" xtype="interval" unit="m"
			ucd="em.wl;stat.interval"
			description="Spectral interval to cut out, as vacuum wavelengths in metres"/>
		<param name="TIME" type="double precision[2]" xtype="interval" unit="d"
			ucd="time.interval;obs.exposure"
			description="Time interval to cut out, as MJD"/>
		<param name="POL" type="text" ucd="meta.code;phys.polarization"
			description="Polarization states to keep (I, Q, U, V, RR, LL, ...)"/>
	</table>

	<!-- The response table.  Not DaCHS's //datalink#dlresponse: that one
	gives service_def the UCD meta.code (DataLink 1.1 says meta.ref, and
	datalinklint reports it) and has its IDs and descriptions as text, which
	break on non-ASCII obs_ids and site names; this one has DataLink 1.1's
	UCDs and unicode IDs, descriptions and error messages. -->
	<table id="links" onDisk="False">
		<meta name="description">The rows of a DataLink response (DataLink 1.1),
		with the standard's UCDs.</meta>
		<column name="ID" type="unicode" ucd="meta.id;meta.main"
			tablehead="DID" verbLevel="1"
			description="The Rucio DID (scope:name) this row is about."/>
		<column name="access_url" type="text" ucd="meta.ref.url"
			tablehead="URL" verbLevel="1" displayHint="type=url"
			description="Where to get the replica (or null for services and errors)."/>
		<column name="service_def" type="text" ucd="meta.ref"
			tablehead="Service" verbLevel="1"
			description="Reference to the service descriptor (RESOURCE) of a #cutout row."/>
		<column name="error_message" type="unicode" ucd="meta.code.error"
			tablehead="Error" verbLevel="1"
			description="Why there is no link: a DataLink fault code and its reason."/>
		<column name="description" type="unicode" ucd="meta.note"
			tablehead="Description" verbLevel="1"
			description="What the link is: the observation, the site and its distance."/>
		<column name="semantics" type="text" ucd="meta.code"
			tablehead="Semantics" verbLevel="1"
			description="#this for replicas (the first is the chosen one), #cutout for the sites' SODA services."/>
		<column name="content_type" type="text" ucd="meta.code.mime"
			tablehead="Type" verbLevel="1"
			description="Media type of what access_url returns."/>
		<column name="content_length" type="bigint" unit="byte"
			ucd="phys.size;meta.file" tablehead="Size" verbLevel="1"
			description="Size of what access_url returns.">
			<values nullLiteral="-1"/>
		</column>
		<column name="content_qualifier" type="text" ucd="meta.code.class"
			tablehead="Product type" verbLevel="1"
			description="What the file is, as a term of the IVOA product-type vocabulary (#cube, #image...), from its ObsCore dataproduct_type."/>
		<column name="local_semantics" type="text" ucd="meta.id.assoc"
			tablehead="Local sem." verbLevel="1"
			description="Service-specific refinement of semantics (unused here)."/>
		<column name="link_auth" type="text" ucd="meta.code"
			tablehead="Auth." verbLevel="1"
			description="Whether the storage wants authentication for this replica: true (SKA storage wants a bearer token Rucio issued), optional or false."/>
		<column name="adler32" type="text" ucd="meta.checksum;meta.file"
			tablehead="Adler-32" verbLevel="1"
			description="Rucio's Adler-32 checksum of the file (eight hex digits), to check a download; content_length is Rucio's size of the file."/>
		<column name="site" type="unicode" ucd="meta.id;meta.curation"
			tablehead="Site" verbLevel="1"
			description="The site holding the replica (#this) or offering the service (#cutout), as the site directory names it: a client sends its storage token to that site's hosts only."/>
	</table>

	<data id="make_links" auto="False">
		<!-- builds a links table from the rows of rucio_rd.dachs_datalink
		(dicts keyed by the links table's column names) -->
		<embeddedGrammar>
			<iterator>
				<code>
					yield from self.sourceToken
				</code>
			</iterator>
		</embeddedGrammar>
		<make table="links"/>
	</data>

	<!-- dlmeta: the links document; dlget: the same decision as a redirect
	(303) to the replica it puts first, for curl -L, wget, browsers and
	pyvo's getdataset(). -->
	<service id="dl" allowed="dlmeta,dlget">
		<meta name="title">Rucio Data Lake DataLink</meta>
		<meta name="shortName">Rucio DataLink</meta>
		<meta name="description">
			For a Rucio DID (scope:name), the replica nearest to you (by the
			geolocation of your IP address) as the first #this link, the
			other replicas as fallbacks, and the SODA cutout services of the
			sites holding them (the chosen replica's site first), each with
			the ID that service takes.  Parameters: ID (repeatable), sort,
			ranking (0 = nearest), client_ip_address, must_include_soda
			(each described with the service's inputs).
		</meta>
		<meta name="testQuery.ID">testing:PTF10tce.fits</meta>
		<customCore module="dlcore"/>
	</service>

	<regSuite title="rucio cone search">
		<regTest title="The Eridanus cone finds the demo's Eridanus files">
			<url RA="53.75308" DEC="-24.93365" SR="1">cone/scs.xml</url>
			<code>
				rows = self.getVOTableRows()
				self.assertEqual(
					set(row["obs_id"] for row in rows), {"Eridanus_full_image"})
				self.assertTrue(len(rows) >= 2, "expected both Eridanus files")
				for row in rows:
					self.assertEqual(row["access_format"],
						"application/x-votable+xml;content=datalink")
					self.assertTrue("?id=" in row["access_url"])
			</code>
		</regTest>
		<regTest title="A cone far from all demo files is empty">
			<url RA="200.0" DEC="-80.0" SR="0.001">cone/scs.xml</url>
			<code>
				self.assertEqual(len(self.getVOTableRows()), 0)
			</code>
		</regTest>
		<regTest title="SCS rejects a missing radius with an error document">
			<url RA="53.75308" DEC="-24.93365">cone/scs.xml</url>
			<code>
				self.assertHasStrings('name="Error"', "SR")
			</code>
		</regTest>
	</regSuite>

	<regSuite title="rucio datalink">
		<regTest title="The demo's PTF10tce file has two replicas, the UK one nearest to RAL">
			<url ID="testing:PTF10tce.fits" client_ip_address="130.246.210.120"
				>dl/dlmeta</url>
			<code>
				rows = self.getVOTableRows()
				sites = [row["site"] for row in rows if row["semantics"] == "#this"]
				self.assertEqual(sites, ["UKSRC", "SPSRC"])
				self.assertHasStrings('name="replica_ranking"')
			</code>
		</regTest>
		<regTest title="An unknown DID is a NotFoundFault row, a malformed one a UsageFault">
			<url client_ip_address="130.246.210.120"
				>dl/dlmeta?ID=testing:no-such-file.fits&amp;ID=no-colon</url>
			<code>
				self.assertHasStrings("NotFoundFault: Rucio knows no file",
					"UsageFault: ID 'no-colon' is not a Rucio DID")
			</code>
		</regTest>
	</regSuite>
</resource>
