<?xml version="1.0" encoding="utf-8"?>
<!-- The demo's Australian site (AUSSRC): DaCHS's own SODA service over the
site's replicas of the cubes, as a site of the data lake would run it.  Not
part of rucio_rd: rucio_rd.stack.soda_site installs it into a DaCHS instance
of its own, whose inputs/aussrc/disk is the site's storage (the files nginx
serves).  The public side is nginx, which lets a request through only with a
bearer token Rucio accepts. -->
<resource schema="aussrc">
	<meta name="title">AUSSRC demo site: SODA over the site's cubes</meta>
	<meta name="description">Cutouts (SODA 1.0, DaCHS's implementation) of the
	HI cubes the demo site AUSSRC holds for the data lake.  The IDs are
	ivo://aussrc.example/~?SCOPE/NAME for the Rucio DID SCOPE:NAME.</meta>
	<meta name="creationDate">2026-11-26T00:00:00Z</meta>
	<meta name="subject">radio-astronomy</meta>
	<meta name="creator.name">rucio_rd demo</meta>

	<table id="cubes" onDisk="True" mixin="//products#table">
		<meta name="description">The site's cubes as DaCHS products: the
		access reference is the Rucio DID's scope/name, the path the replica's
		place in the site's storage.</meta>
	</table>

	<data id="import">
		<sources>
			<!-- the WALLABY cubes' scopes, as Rucio's deterministic paths lay them out -->
			<pattern>disk/sp3531_soda/*/*/*.fits</pattern>
			<pattern>disk/orange/*/*/*.fits</pattern>
		</sources>
		<fitsProdGrammar qnd="True">
			<rowfilter procDef="//products#define">
				<bind key="table">"aussrc.cubes"</bind>
				<!-- aussrc/disk/SCOPE/xx/yy/NAME -> SCOPE/NAME, the DID's parts -->
				<bind key="accref">"/".join(\inputRelativePath{True}.split("/")[2::3])</bind>
				<bind key="preview">None</bind>
			</rowfilter>
		</fitsProdGrammar>
		<make table="cubes"/>
	</data>

	<service id="soda" allowed="dlget,dlmeta,dlasync">
		<meta name="title">AUSSRC SODA</meta>
		<meta name="description">SODA cutouts (CIRCLE, POLYGON, POS, BAND,
		pixel ranges) of the site's cubes.</meta>
		<datalinkCore>
			<descriptorGenerator procDef="//soda#fits_genDesc"/>
			<FEED source="//soda#fits_standardDLFuncs" spectralAxis="3"/>
		</datalinkCore>
	</service>
</resource>
